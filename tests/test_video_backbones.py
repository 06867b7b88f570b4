"""Text-to-video backbones (AnimateDiff, ModelScope; ``alm/backbones/video.py``) on their tiny miniatures.

The miniatures are built from config (seeded, no hub) into a temporary ``ALM_CACHE_DIR`` in the real
checkpoints' layout and loaded through the config (``backbone=<name>-tiny``) by the same loader as the real
ones. Covered: layout and loading, eps (shape, prompt, frames), frame-by-frame encode/decode, the
missing-checkpoint one-liners, the fetch entries, and a long video (windows along the frame axis) end to end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alm.backbones import tiny  # noqa: E402
from alm.backbones.checkpoints import CHECKPOINTS, select_files  # noqa: E402
from alm.backbones.latent import LatentDiffusion  # noqa: E402
from alm.backbones.video import VideoDiffusion  # noqa: E402
from alm.config import build, compose  # noqa: E402
from alm.errors import CheckpointError, ConfigError  # noqa: E402
from conftest import load_script  # noqa: E402

FRAMES = 4  # clips of the unit tests (the end-to-end run keeps the default 16)
KINDS = {"animatediff-tiny": "UNetMotionModel", "modelscope-tiny": "UNet3DConditionModel"}


pytestmark = pytest.mark.usefixtures("tiny_models_cache")  # conftest: this module's own cache of tiny models


_BACKBONES: dict[str, VideoDiffusion] = {}


def backbone(name: str) -> VideoDiffusion:
    if name not in _BACKBONES:
        _BACKBONES[name] = build(compose([f"backbone={name}", "device=cpu", f"backbone.frames={FRAMES}"]).backbone)
    return _BACKBONES[name]


# --- building and loading ---------------------------------------------------------------------------

def test_tiny_video_models_are_in_the_real_layout():
    ad = tiny.ensure_tiny("animatediff")
    for f in ("model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json", "tokenizer/vocab.json",
              "scheduler/scheduler_config.json", "motion_adapter/config.json",
              "motion_adapter/diffusion_pytorch_model.safetensors"):
        assert (ad / f).is_file(), f
    assert json.loads((ad / "unet" / "config.json").read_text())["_class_name"] == "UNet2DConditionModel"  # the SD base
    assert json.loads((ad / "motion_adapter" / "config.json").read_text())["_class_name"] == "MotionAdapter"
    ms = tiny.ensure_tiny("modelscope")
    assert json.loads((ms / "unet" / "config.json").read_text())["_class_name"] == "UNet3DConditionModel"
    assert json.loads((ms / "model_index.json").read_text())["_class_name"] == "TextToVideoSDPipeline"
    assert json.loads((ms / "scheduler" / "scheduler_config.json").read_text()) == tiny.MODELSCOPE_SCHEDULER
    assert json.loads((ms / "tokenizer" / "special_tokens_map.json").read_text())["pad_token"] == "!"  # OpenCLIP


@pytest.mark.parametrize("name", KINDS)
def test_the_config_loads_the_miniature_like_a_real_checkpoint(name):
    bb = backbone(name)
    assert isinstance(bb, VideoDiffusion) and isinstance(bb, LatentDiffusion)
    assert type(bb.denoiser.model).__name__ == KINDS[name]
    assert bb.sample_shape == (4, FRAMES, 16, 16) and bb.data_shape == (3, FRAMES, 64, 64)
    assert bb.conditional and bb.scheduler_config["prediction_type"] == "epsilon"
    if name.startswith("animatediff"):  # AnimateDiff's schedule: linear betas, not SD 1.5's scaled-linear
        assert bb.scheduler_config["beta_schedule"] == "linear" and bb.scheduler_config["beta_start"] == 0.00085
    else:
        assert bb.scheduler_config["beta_schedule"] == "scaled_linear"
    # the loader of the real checkpoints, given the folders by hand, computes the same eps
    folder = tiny.ensure_tiny(name.removesuffix("-tiny"))
    adapter = str(folder / "motion_adapter") if name.startswith("animatediff") else None
    by_hand = VideoDiffusion(path=str(folder), adapter_path=adapter, frames=FRAMES, resolution=64, dtype="float32",
                             scheduler=dict(compose([f"backbone={name}"]).backbone.scheduler or {}))
    z, t = torch.randn(1, *bb.sample_shape, generator=torch.Generator().manual_seed(0)), torch.tensor([400])
    cond = bb.make_cond("a photo of a cat", 1)
    assert torch.equal(bb.eps(z, t, cond), by_hand.eps(z, t, by_hand.make_cond("a photo of a cat", 1)))


def test_frames_and_resolution_are_config_keys():
    bb = build(compose(["backbone=modelscope-tiny", "device=cpu", "backbone.frames=2", "backbone.resolution=32"]).backbone)
    assert bb.sample_shape == (4, 2, 8, 8) and bb.data_shape == (3, 2, 32, 32)
    assert compose(["backbone=animatediff"]).backbone.frames == 16 == compose(["backbone=modelscope"]).backbone.frames
    with pytest.raises(ConfigError, match="motion modules' 32 positions"):
        build(compose(["backbone=animatediff-tiny", "device=cpu", "backbone.frames=40"]).backbone)
    with pytest.raises(ConfigError, match="frames=0"):
        build(compose(["backbone=modelscope-tiny", "device=cpu", "backbone.frames=0"]).backbone)


# --- eps, encode, decode ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", KINDS)
def test_eps_has_the_clip_shape_and_depends_on_the_prompt_and_on_other_frames(name):
    bb = backbone(name)
    z = torch.randn(2, *bb.sample_shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500, 300])
    cat, dog = bb.make_cond(["a photo of a cat"] * 2, 2), bb.make_cond("a painting of a dog", 2)
    e = bb.eps(z, t, cat)
    assert e.shape == z.shape and e.dtype == z.dtype and torch.isfinite(e).all()
    assert (e - bb.eps(z, t, dog)).abs().max() > 1e-4
    assert (e - bb.eps(z, t, None)).abs().max() > 1e-4  # None = the empty prompt
    mixed = bb.make_cond(["a photo of a cat", "a painting of a dog"], 2)  # rows are independent samples
    assert torch.allclose(bb.eps(z, t, mixed)[:1], e[:1], atol=1e-5)
    moved = z.clone()
    moved[:, :, 0] += 1.0  # frame 0 only: the temporal layers carry it to the last frame
    assert (bb.eps(moved, t, cat)[:, :, -1] - e[:, :, -1]).abs().max() > 1e-5


@pytest.mark.parametrize("name", KINDS)
def test_encode_and_decode_go_frame_by_frame(name):
    bb = backbone(name)
    x = torch.rand(2, *bb.data_shape, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z = bb.encode(x)
    assert z.shape == (2, *bb.sample_shape)
    out = bb.decode(z)
    assert out.shape == x.shape and out.abs().max() <= 1
    # each frame is the image backbone's encoding of that frame, whatever the chunk size
    assert torch.allclose(z[:, :, 1], LatentDiffusion.encode(bb, x[:, :, 1]), atol=1e-5)
    bb.decode_chunk_size = 1
    try:
        assert torch.allclose(bb.decode(z), out, atol=1e-5)
    finally:
        bb.decode_chunk_size = 16
    mask = torch.zeros(1, 1, *bb.data_shape[1:])
    mask[..., 32:] = 1
    small = bb.mask_to_sample(mask)
    assert small.shape == (1, 1, *bb.sample_shape[1:]) and small[..., 8:].eq(1).all() and small[..., :8].eq(0).all()


# --- missing checkpoints and the fetch entries ----------------------------------------------------------

def _one_line_error(overrides: list[str]) -> str:
    with pytest.raises(CheckpointError) as info:
        build(compose(overrides + ["device=cpu"]).backbone)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_checkpoint_is_one_line_naming_the_fetch_command(empty_hf_cache):
    message = _one_line_error(["backbone=modelscope"])
    assert CHECKPOINTS["modelscope"].repo_id in message and "python scripts/fetch_weights.py modelscope" in message
    message = _one_line_error(["backbone=animatediff"])  # the SD 1.5 base first
    assert "python scripts/fetch_weights.py sd15" in message and str(empty_hf_cache) in message
    base = tiny.ensure_tiny("sd15")  # a base present, the motion adapter missing
    message = _one_line_error(["backbone=animatediff", f"backbone.path={base}", "backbone.resolution=64"])
    assert CHECKPOINTS["animatediff"].repo_id in message and "python scripts/fetch_weights.py animatediff" in message
    with pytest.raises(ConfigError, match="motion adapter"):  # an image UNet and no adapter at all
        build(compose(["backbone=animatediff", f"backbone.path={base}", "backbone.adapter_repo_id=null", "device=cpu"]).backbone)


def test_fetch_entries_for_the_video_models(monkeypatch, capsys):
    listing = ["README.md", ".gitattributes", "config.json", "diffusion_pytorch_model.safetensors",
               "diffusion_pytorch_model.fp16.safetensors", "mm_sd_v15_v2.ckpt"]
    comps = CHECKPOINTS["animatediff"].components
    assert select_files(listing, comps) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert select_files(listing, comps, "fp16") == ["config.json", "diffusion_pytorch_model.fp16.safetensors"]
    assert CHECKPOINTS["animatediff"].requires == ("sd15",)
    assert CHECKPOINTS["modelscope"].repo_id == compose(["backbone=modelscope"]).backbone.repo_id
    assert CHECKPOINTS["animatediff"].repo_id == compose(["backbone=animatediff"]).backbone.adapter_repo_id
    script = load_script("fetch_weights")
    fetched = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(script, "fetch", lambda ckpt, variant, revision=None: (fetched.append((ckpt.name, revision)), (Path("/x"), None))[1])
    monkeypatch.setattr(script, "folder_size", lambda folder: 0)
    assert script.main(["animatediff", "--revision", "abc"]) == 0  # the base comes along, at its own pin
    assert fetched == [("sd15", None), ("animatediff", "abc")]
    assert script.main(["--list"]) == 0 and "modelscope" in capsys.readouterr().out


# --- a long video: windows along the frame axis ----------------------------------------------------------

def test_a_long_video_runs_end_to_end_on_tiny_animatediff(tmp_path):
    from alm.runner import run

    cfg = compose(["task=wide", "task.axis=-3", "task.windows=3", "task.stride=0.5", "method=alm", "backbone=animatediff-tiny",
                   "dataset=wide_prompts", "dataset.repeats=1", "num_samples=1", "sampler.steps=2", "metrics=none",
                   "device=cpu"])
    summary = run(cfg, tmp_path)
    assert summary["samples"] == 1
    record = torch.load(tmp_path / "samples" / "00000.pt", weights_only=False)
    assert record["output"].shape == (3, 32, 64, 64)  # 3 windows of 16 frames at a stride of 8
    assert record["meta"]["windows"] == [[0, 16], [8, 24], [16, 32]] and record["meta"]["axis"] == -3
    assert torch.isfinite(record["output"]).all()
    import imageio.v3 as iio
    from PIL import Image

    assert iio.imread(tmp_path / "videos" / "00000_output.mp4").shape == (32, 128, 128, 3)  # enlarged to >= 128 px
    w, h = Image.open(tmp_path / "images" / "00000_output.png").size  # the strip: every 8th frame, numbered
    assert w >= 4 * 64 and h > 64


# --- equality with diffusers' own pipelines ---------------------------------------------------------------

@pytest.mark.parametrize("name", KINDS)
def test_eps_is_the_pipelines_unet_call_and_a_saved_pipeline_loads(name, tmp_path):
    """Our eps is the UNet call of AnimateDiffPipeline / TextToVideoSDPipeline (their prompt encoding,
    AnimateDiff's per-frame repeat of it), and a saved pipeline folder loads without an adapter."""
    import diffusers

    bb = backbone(name)
    folder = tiny.ensure_tiny(name.removesuffix("-tiny"))
    if name.startswith("animatediff"):
        adapter = diffusers.MotionAdapter.from_pretrained(str(folder / "motion_adapter"), low_cpu_mem_usage=False)
        pipe = diffusers.AnimateDiffPipeline.from_pretrained(str(folder), motion_adapter=adapter, low_cpu_mem_usage=False)
    else:
        pipe = diffusers.TextToVideoSDPipeline.from_pretrained(str(folder), low_cpu_mem_usage=False)
    z = torch.randn(1, *bb.sample_shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([250])
    with torch.no_grad():
        states = pipe.encode_prompt("a photo of a cat", "cpu", 1, False)[0]
        if name.startswith("animatediff"):
            states = states.repeat_interleave(FRAMES, dim=0)  # as AnimateDiffPipeline.__call__
        want = pipe.unet(z, t, encoder_hidden_states=states).sample
    assert torch.allclose(bb.eps(z, t, bb.make_cond("a photo of a cat", 1)), want, atol=1e-5)
    pipe.save_pretrained(str(tmp_path / "pipe"))
    saved = VideoDiffusion(path=str(tmp_path / "pipe"), frames=FRAMES, resolution=64, dtype="float32")
    assert type(saved.denoiser.model).__name__ == KINDS[name]
    assert torch.allclose(saved.eps(z, t, saved.make_cond("a photo of a cat", 1)), want, atol=1e-5)


def test_task_video_is_the_paper_geometry_along_frames():
    """task=video: 12 windows of 16 frames at a stride of 8 -> 104 frames (paper §4.2.4), on the frame axis."""
    from alm.config import build
    from alm.tasks.windows import Windows

    cfg = compose(["task=video", "backbone=animatediff-tiny", "dataset=wide_prompts", "device=cpu"])
    task = build(cfg.task)
    assert isinstance(task, Windows) and (task.windows, task.stride, task.axis) == (12, 0.5, -3)
    assert cfg.mask.name == "none"
    g = task.geometry(type("B", (), {"sample_shape": (4, 16, 8, 8)})())
    assert (g.size, g.stride, g.count, g.length) == (16, 8, 12, 104)


def test_clips_per_call_splits_a_call_without_changing_it():
    """backbone.clips_per_call: the UNet sees at most that many clips at a time; eps is the same."""
    bb = backbone("animatediff-tiny")
    z = torch.randn(5, *bb.sample_shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([900, 700, 500, 300, 100])
    cond = bb.make_cond(["a cat", "a dog", "waves", "smoke", "fire"], 5)
    with torch.no_grad():
        whole = bb.eps(z, t, cond)
        bb.clips_per_call = 2
        try:
            split = bb.eps(z, t, cond)
        finally:
            bb.clips_per_call = None
    assert torch.allclose(whole, split, atol=1e-5)
