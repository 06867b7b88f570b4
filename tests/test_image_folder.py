"""The image-folder data set: reading, centre crop / resize, labels, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alm.data.image_folder import ImageFolderDataset
from alm.errors import ConfigError, DataError

CONF = Path(__file__).resolve().parents[1] / "conf"


def _gradient(w: int, h: int) -> np.ndarray:
    """An RGB image whose red channel encodes x and green y (so crops can be located)."""
    xs = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    ys = np.linspace(0, 255, h)[:, None].repeat(w, 1)
    return np.stack([xs, ys, np.full_like(xs, 128)], -1).astype(np.uint8)


def test_png_jpeg_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    smooth = _gradient(32, 32)
    Image.fromarray(smooth).save(tmp_path / "b.jpg", quality=95)
    Image.fromarray(smooth).save(tmp_path / "c.JPEG", quality=95)
    (tmp_path / "readme.txt").write_text("not an image")
    ds = ImageFolderDataset(tmp_path, resolution=32)
    assert len(ds) == 3 and ds.shape == (3, 32, 32) and ds.name == "image_folder"
    assert [ds[i].meta["file"] for i in range(3)] == ["a.png", "b.jpg", "c.JPEG"]  # sorted
    png = ds[0].image
    assert png.shape == (3, 32, 32) and png.dtype == torch.float32
    assert png.min() >= -1 and png.max() <= 1
    # PNG is lossless: exactly the pixels, scaled to [-1, 1]
    assert torch.allclose(png, torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1, atol=1e-6)
    assert ds[1].image.shape == (3, 32, 32) and ds[1].label is None
    want = torch.from_numpy(smooth).permute(2, 0, 1).float() / 127.5 - 1
    assert (ds[1].image - want).abs().max() < 0.05  # JPEG: close, not exact
    assert ds[2].image.min() >= -1 and ds[2].image.max() <= 1


def test_center_crop_and_resize(tmp_path):
    Image.fromarray(_gradient(96, 48)).save(tmp_path / "wide.png")  # crop the central 48x48 columns 24..71
    Image.fromarray(_gradient(20, 60)).save(tmp_path / "tall.png")  # crop rows 20..39, then upsample
    ds = ImageFolderDataset(tmp_path, resolution=16)
    tall, wide = ds[0].image, ds[1].image
    assert tall.shape == wide.shape == (3, 16, 16)
    assert tall.min() >= -1 and tall.max() <= 1
    red = (wide[0] + 1) * 127.5  # encodes the source column
    cols = np.linspace(0, 255, 96)
    assert abs(red[:, 0].mean().item() - cols[24]) < 8 and abs(red[:, -1].mean().item() - cols[71]) < 8
    green = (tall[1] + 1) * 127.5  # encodes the source row
    rows = np.linspace(0, 255, 60)
    assert abs(green[0].mean().item() - rows[20]) < 8 and abs(green[-1].mean().item() - rows[39]) < 8


def test_grayscale_channels_1(tmp_path):
    Image.fromarray(_gradient(24, 24)).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((24, 24), 255, np.uint8), mode="L").save(tmp_path / "white.png")
    ds = ImageFolderDataset(tmp_path, resolution=8, channels=1)
    assert ds.shape == (1, 8, 8)
    assert ds[0].image.shape == (1, 8, 8)
    assert torch.allclose(ds[1].image, torch.ones(1, 8, 8))
    # a grayscale file read as RGB repeats its channel
    rgb = ImageFolderDataset(tmp_path, resolution=8, channels=3)[1].image
    assert rgb.shape == (3, 8, 8) and torch.allclose(rgb, torch.ones(3, 8, 8))


def test_rgba_and_palette_images(tmp_path):
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), mode="RGBA").save(tmp_path / "a.png")
    Image.fromarray(_gradient(8, 8)).convert("P").save(tmp_path / "b.png")
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "c.bmp")
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "d.webp", lossless=True)
    ds = ImageFolderDataset(tmp_path, resolution=8)
    assert len(ds) == 4
    for i in range(4):
        assert ds[i].image.shape == (3, 8, 8)


def test_labels_limit_and_csv(tmp_path):
    for name in ("x.png", "y.png", "z.png"):
        Image.fromarray(_gradient(8, 8)).save(tmp_path / name)
    assert [item.label for item in ImageFolderDataset(tmp_path, resolution=8, labels=3)] == [3, 3, 3]
    assert ImageFolderDataset(tmp_path, resolution=8, labels="a photo of a cat")[2].label == "a photo of a cat"
    assert len(ImageFolderDataset(tmp_path, resolution=8, limit=2)) == 2
    (tmp_path / "labels.csv").write_text("file,label\nx.png,1\ny.png,a dog\nz.png,0\n")
    ds = ImageFolderDataset(tmp_path, resolution=8, labels="labels.csv")
    assert [ds[i].label for i in range(3)] == [1, "a dog", 0]
    (tmp_path / "short.csv").write_text("x.png,1\n")
    with pytest.raises(DataError, match="no row for image y.png"):
        ImageFolderDataset(tmp_path, resolution=8, labels="short.csv")
    with pytest.raises(ConfigError):
        ImageFolderDataset(tmp_path, resolution=8, channels=2)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError) as info:
        ImageFolderDataset(tmp_path / "nope")
    message = str(info.value)
    assert "\n" not in message and "nope" in message and "dataset.path=" in message


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no images"):
        ImageFolderDataset(tmp_path)


def test_corrupt_file_named_when_loaded(tmp_path):
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    ds = ImageFolderDataset(tmp_path, resolution=8)  # building the data set reads no pixels
    assert len(ds) == 2
    with pytest.raises(DataError) as info:
        ds[0]  # sorted: broken.jpg first
    assert "broken.jpg" in str(info.value) and "\n" not in str(info.value)
    assert ds[1].image.shape == (3, 8, 8)


def test_hydra_config_instantiates(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    Image.fromarray(_gradient(40, 40)).save(tmp_path / "a.png")
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(overrides=["+dataset=image_folder", f"dataset.path={tmp_path}"])
    ds = instantiate(cfg.dataset)
    assert ds.shape == (3, 32, 32) and ds[0].image.shape == (3, 32, 32)


# --- preprocess="authors": the authors' load_rgb (OpenCV read, BGR -> RGB, INTER_LINEAR resize, no crop) ----

def _authors_load_rgb(path: Path, size: int) -> np.ndarray:
    """Hleephilip/ALM_public, alm/image_utils.py load_rgb, transcribed: uint8 (size, size, 3) RGB."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def _scaled(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32)).permute(2, 0, 1).contiguous() / 127.5 - 1.0


@pytest.mark.parametrize("size", [(200, 120), (40, 30), (64, 64)])  # (w, h): down, up, the same size
def test_authors_loader_is_opencv_exactly(tmp_path, size):
    rng = np.random.default_rng(size[0])
    noisy = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "a.png")
    Image.fromarray(_gradient(*size)).save(tmp_path / "b.jpg", quality=90)
    ds = ImageFolderDataset(tmp_path, resolution=64, preprocess="authors")
    assert ds.preprocess == "authors"
    for i, name in enumerate(["a.png", "b.jpg"]):
        want = _authors_load_rgb(tmp_path / name, 64)
        got = ds[i].image
        assert got.shape == (3, 64, 64) and got.dtype == torch.float32
        assert torch.equal(got, _scaled(want)), name  # 0 grey levels apart, the same [-1, 1] floats
    # the PNG at its own size is its pixels; the bilinear resize is not Pillow's crop + bicubic
    if size == (64, 64):
        assert torch.equal(ds[0].image, _scaled(noisy))
    else:
        crop = ImageFolderDataset(tmp_path, resolution=64)[0].image
        assert not torch.equal(crop, ds[0].image)


def test_authors_loader_does_not_crop(tmp_path):
    """A 96x48 image is squeezed to 16x16 whole: the first and last columns are the source's ends."""
    Image.fromarray(_gradient(96, 48)).save(tmp_path / "wide.png")
    img = ImageFolderDataset(tmp_path, resolution=16, preprocess="authors")[0].image
    red = (img[0] + 1) * 127.5  # encodes the source column: 0 .. 255 over the full width
    cols = np.linspace(0, 255, 96)
    assert red[:, 0].mean() < cols[3] and red[:, -1].mean() > cols[92]  # crop mode: cols[24] and cols[71]
    green = (img[1] + 1) * 127.5  # rows 0 .. 47 spread over 16 rows, also whole
    assert green[0].mean() < 10 and green[-1].mean() > 245
    assert torch.equal(img, _scaled(_authors_load_rgb(tmp_path / "wide.png", 16)))


def test_authors_loader_grayscale_and_other_files(tmp_path):
    import cv2

    Image.fromarray(_gradient(30, 20)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), mode="RGBA").save(tmp_path / "b.png")
    Image.fromarray(_gradient(8, 8)).convert("P").save(tmp_path / "c.png")
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "d.webp", lossless=True)
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(tmp_path / "e.bmp")
    gray = ImageFolderDataset(tmp_path, resolution=12, channels=1, preprocess="authors")
    want = cv2.cvtColor(_authors_load_rgb(tmp_path / "a.png", 12), cv2.COLOR_RGB2GRAY)
    assert torch.equal(gray[0].image, _scaled(want[..., None]))
    rgb = ImageFolderDataset(tmp_path, resolution=12, preprocess="authors")
    for i in range(5):
        assert rgb[i].image.shape == (3, 12, 12)
    assert torch.equal(rgb[4].image, torch.full((3, 12, 12), 200 / 127.5 - 1))  # a gray file: 3 equal channels


def test_authors_loader_errors(tmp_path):
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    ds = ImageFolderDataset(tmp_path, resolution=8, preprocess="authors")
    with pytest.raises(DataError) as info:
        ds[0]
    assert "broken.jpg" in str(info.value) and "\n" not in str(info.value)
    assert ds[1].image.shape == (3, 8, 8)
    with pytest.raises(ConfigError, match="preprocess"):
        ImageFolderDataset(tmp_path, resolution=8, preprocess="resize")


def test_crop_stays_the_default_and_unchanged(tmp_path):
    Image.fromarray(_gradient(40, 24)).save(tmp_path / "a.png")
    default = ImageFolderDataset(tmp_path, resolution=16)
    assert default.preprocess == "crop"
    assert torch.equal(default[0].image, ImageFolderDataset(tmp_path, resolution=16, preprocess="crop")[0].image)
    # the original reading: Pillow, central 24x24 square (columns 8..31), bicubic
    with Image.open(tmp_path / "a.png") as im:
        want = np.asarray(im.convert("RGB").crop((8, 0, 32, 24)).resize((16, 16), Image.Resampling.BICUBIC, reducing_gap=None))
    assert torch.equal(default[0].image, _scaled(want))


def test_paper_configs_read_images_as_the_authors(tmp_path):
    """afhq / celebahq / seasons / painters default to preprocess=authors; image_folder keeps crop."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from alm.config import compose

    for name in ("afhq", "celebahq", "seasons", "painters"):
        assert OmegaConf.load(CONF / "dataset" / f"{name}.yaml").preprocess == "authors", name
    assert OmegaConf.load(CONF / "dataset" / "image_folder.yaml").preprocess == "crop"
    Image.fromarray(_gradient(60, 30)).save(_folder(tmp_path / "afhq" / "val" / "cat") / "0.png")
    cfg = compose(["dataset=afhq", f"dataset.path={tmp_path / 'afhq'}", "dataset.resolution=16", "dataset.pairs=1"])
    ds = instantiate(cfg.dataset)
    assert ds.preprocess == "authors"
    assert torch.equal(ds[0].image, _scaled(_authors_load_rgb(tmp_path / "afhq" / "val" / "cat" / "0.png", 16)))


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
