"""Masks: shapes, values, determinism, coverage, folder round trips, errors, and every conf/mask yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from alm.errors import ConfigError, DataError
from alm.masks import KINDS, REPAINT_KINDS, MaskSource, make_mask, validate_mask

CONF_MASK = Path(__file__).resolve().parent.parent / "conf" / "mask"
SIZES = [(8, 8), (32, 32), (64, 48), (256, 256)]
GENERATED = [k for k in KINDS if k != "folder"]
RANDOM = ["thick", "thin", "box", "random_pixels"]


def _write_png(path: Path, unobserved: np.ndarray) -> None:
    """Write a mask as a PNG, white = unobserved."""
    Image.fromarray((unobserved.astype(np.uint8) * 255), mode="L").save(path)


def _check(mask: torch.Tensor, size: tuple[int, int]) -> None:
    assert mask.shape == (1, *size) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert 0 < mask.sum() < mask.numel()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", GENERATED)
def test_every_kind_every_size(kind, size):
    src = MaskSource(kind, seed=3)
    for index in range(3):
        _check(src.get(index, size), size)


@pytest.mark.parametrize("kind", GENERATED)
def test_deterministic(kind):
    a, b = MaskSource(kind, seed=7), MaskSource(kind, seed=7)
    for index in (0, 5):
        assert torch.equal(a.get(index, (32, 32)), b.get(index, (32, 32)))
    # get() has no state: the order of requests does not matter
    first = a.get(5, (32, 32))
    a.get(1, (64, 48))
    assert torch.equal(first, a.get(5, (32, 32)))


@pytest.mark.parametrize("kind", RANDOM)
def test_random_kinds_vary_with_index_and_seed(kind):
    src = MaskSource(kind, seed=0)
    masks = [src.get(i, (64, 64)) for i in range(4)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])
    other = MaskSource(kind, seed=1)
    assert any(not torch.equal(src.get(i, (64, 64)), other.get(i, (64, 64))) for i in range(4))


def test_make_mask_uses_the_given_rng():
    a = make_mask("thin", (32, 32), np.random.default_rng(11))
    b = make_mask("thin", (32, 32), np.random.default_rng(11))
    assert torch.equal(a, b)


@pytest.mark.parametrize("size", SIZES)
def test_repaint_fixed_fractions(size):
    h, w = size
    cover = {k: MaskSource(k).get(0, size).mean().item() for k in ("genhalf", "nn2", "ev2li", "ex64")}
    assert cover["genhalf"] == pytest.approx(0.5, abs=1 / w)
    assert cover["nn2"] == pytest.approx(0.75, abs=0.5 / min(h, w) + 1e-9)
    assert cover["ev2li"] == pytest.approx(0.5, abs=0.5 / h)
    assert cover["ex64"] == pytest.approx(15 / 16, abs=0.02)


def test_repaint_layouts_at_256():
    """The layouts measured on RePaint's shipped 256-px files (see the alm.masks docstring)."""
    size = (256, 256)
    ex64 = MaskSource("ex64").get(0, size)[0]
    observed = (ex64 == 0).nonzero()
    assert observed[:, 0].min() == 96 and observed[:, 0].max() == 159
    assert observed[:, 1].min() == 96 and observed[:, 1].max() == 159 and len(observed) == 64 * 64
    genhalf = MaskSource("genhalf").get(0, size)[0]
    assert (genhalf[:, :128] == 0).all() and (genhalf[:, 128:] == 1).all()
    nn2 = MaskSource("nn2").get(0, size)[0]
    assert nn2[1, 1] == 0 and nn2[0, 0] == 1 and nn2[0, 1] == 1 and nn2[1, 0] == 1
    ev2li = MaskSource("ev2li").get(0, size)[0]
    assert (ev2li[0::2] == 1).all() and (ev2li[1::2] == 0).all()


@pytest.mark.parametrize("kind", ["thick", "thin"])
@pytest.mark.parametrize("size", [(8, 8), (32, 32), (64, 48), (256, 256)])
def test_strokes_coverage(kind, size):
    src = MaskSource(kind)
    n = 6 if size == (256, 256) else 20
    cover = np.array([src.get(i, size).mean().item() for i in range(n)])
    assert (cover > 0).all() and (cover <= 0.5 + 1e-9).all()


def test_strokes_look_like_repaints_on_average():
    # RePaint's 100 files: mean unobserved fraction thick 0.25, thin 0.30
    for kind in ("thick", "thin"):
        src = MaskSource(kind)
        mean = np.mean([src.get(i, (64, 64)).mean().item() for i in range(60)])
        assert 0.15 < mean < 0.4


def test_generic_kinds():
    c = MaskSource("center", keep=0.5).get(0, (32, 32))[0]
    assert (c == 0).sum() == 16 * 16 and (c[8:24, 8:24] == 0).all()
    assert MaskSource("center").name == "center0.5"
    assert MaskSource("box", size=0.25).get(0, (32, 32)).sum() == 8 * 8
    p = np.mean([MaskSource("random_pixels", p_observed=0.3).get(i, (64, 64)).mean().item() for i in range(4)])
    assert p == pytest.approx(0.7, abs=0.03)


def test_mixed_cycles_kinds_by_index():
    src = MaskSource("mixed", seed=2)
    for index in range(8):
        kind = REPAINT_KINDS[index % len(REPAINT_KINDS)]
        direct = make_mask(kind, (32, 32), np.random.default_rng(0))
        if kind in ("ex64", "genhalf", "nn2", "ev2li"):  # fixed kinds do not depend on the rng
            assert torch.equal(src.get(index, (32, 32)), direct)
    two = MaskSource("mixed", kinds=["genhalf", "center"], kind_params={"center": {"keep": 0.25}})
    assert torch.equal(two.get(0, (16, 16)), MaskSource("genhalf").get(0, (16, 16)))
    assert torch.equal(two.get(3, (16, 16)), MaskSource("center", keep=0.25).get(0, (16, 16)))


# ---------------------------------------------------------------------------------------------- folder


def test_folder_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    written = []
    for name in ("b.png", "a.png", "c.png"):
        m = rng.random((16, 12)) < 0.5
        _write_png(tmp_path / name, m)
        written.append((name, m))
    (tmp_path / "notes.txt").write_text("not a mask")
    by_name = dict(written)
    src = MaskSource("folder", folder=str(tmp_path))
    for index, name in enumerate(["a.png", "b.png", "c.png", "a.png"]):  # sorted, index modulo count
        got = src.get(index, (16, 12))[0].numpy().astype(bool)
        assert (got == by_name[name]).all()
    inverted = MaskSource("folder", folder=str(tmp_path), invert=True).get(0, (16, 12))[0].numpy().astype(bool)
    assert (inverted == ~by_name["a.png"]).all()
    assert src.name == f"folder_{tmp_path.name}"


def test_folder_resize_nearest(tmp_path):
    m = np.zeros((8, 8), dtype=bool)
    m[:, 4:] = True
    _write_png(tmp_path / "m.png", m)
    got = MaskSource("folder", folder=str(tmp_path), resize=True).get(0, (16, 32))[0]
    assert (got[:, 16:] == 1).all() and (got[:, :16] == 0).all()


def test_folder_wrong_size(tmp_path):
    _write_png(tmp_path / "m.png", np.eye(8, dtype=bool))
    with pytest.raises(DataError, match=r"m\.png.*8x8.*16x16"):
        MaskSource("folder", folder=str(tmp_path)).get(0, (16, 16))


def test_folder_corrupt_file(tmp_path):
    _write_png(tmp_path / "a.png", np.eye(8, dtype=bool))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    src = MaskSource("folder", folder=str(tmp_path))
    src.get(0, (8, 8))
    with pytest.raises(DataError, match=r"b\.png") as err:
        src.get(1, (8, 8))
    assert "\n" not in str(err.value)


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        MaskSource("folder", folder=str(tmp_path / "nope"))
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match="no .png"):
        MaskSource("folder", folder=str(tmp_path))
    with pytest.raises(ConfigError, match="needs folder"):
        MaskSource("folder")


def test_folder_all_white_mask_is_rejected(tmp_path):
    _write_png(tmp_path / "m.png", np.ones((8, 8), dtype=bool))
    with pytest.raises(DataError, match="all ones"):
        MaskSource("folder", folder=str(tmp_path)).get(0, (8, 8))


# ---------------------------------------------------------------------------------------------- errors


def test_validate_mask_errors():
    validate_mask(torch.tensor([[[0.0, 1.0]]]), "ok")
    with pytest.raises(DataError, match="all zeros"):
        validate_mask(torch.zeros(1, 4, 4), "sample 3")
    with pytest.raises(DataError, match="all ones"):
        validate_mask(torch.ones(1, 4, 4), "sample 3")
    with pytest.raises(DataError, match="other than 0 and 1"):
        validate_mask(torch.full((1, 2, 2), 0.5), "x")
    with pytest.raises(DataError, match=r"\(1, H, W\)"):
        validate_mask(torch.zeros(4, 4), "x")


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown mask kind 'stars'.*thick.*folder"):
        MaskSource("stars")
    with pytest.raises(ConfigError, match="unknown mask kind"):
        make_mask("stars", (8, 8), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="unknown parameter.*kep"):
        MaskSource("center", kep=0.5)
    with pytest.raises(ConfigError, match="keep"):
        MaskSource("center", keep=1.5)
    with pytest.raises(ConfigError, match="only used by mask kind 'folder'"):
        MaskSource("thick", folder="/tmp")
    with pytest.raises(ConfigError, match="unknown or unsupported kind"):
        MaskSource("mixed", kinds=["thick", "folder"])


# ---------------------------------------------------------------------------------------------- configs


def _yamls() -> list[Path]:
    return sorted(CONF_MASK.glob("*.yaml"))


def test_one_yaml_per_kind():
    assert {p.stem for p in _yamls()} >= set(KINDS)


@pytest.mark.parametrize("path", _yamls(), ids=lambda p: p.stem)
def test_yaml_instantiates(path, tmp_path):
    from hydra.utils import instantiate

    cfg = OmegaConf.load(path)
    if path.stem == "none":  # mask=none (task=wide): no masks at all, asking for one is a one-line error
        from alm.errors import ConfigError
        from alm.masks import NoMasks

        src = instantiate(cfg)
        assert isinstance(src, NoMasks) and cfg.name == "none"
        with pytest.raises(ConfigError, match="mask=none gives no masks"):
            src.get(0, (32, 32))
        return
    if cfg._target_ == "alm.motion.frame_masks.FrameMasks":  # a motion's frames (task=motion), relative to its length
        from alm.errors import ConfigError

        src = instantiate(cfg)
        assert src.name == cfg.name and src.frames(40, 64).shape == (1, 1, 64)
        with pytest.raises(ConfigError, match="motion mask"):
            src.get(0, (32, 32))
        return
    assert cfg._target_ == "alm.masks.MaskSource" and cfg.seed == 0 and cfg.name
    if cfg.kind == "folder":
        _write_png(tmp_path / "m.png", np.eye(32, dtype=bool))
        cfg.folder = str(tmp_path)
    src = instantiate(cfg)
    assert isinstance(src, MaskSource) and src.name == cfg.name and src.kind == cfg.kind
    _check(src.get(0, (32, 32)), (32, 32))
    _check(src.get(1, (32, 32)), (32, 32))
