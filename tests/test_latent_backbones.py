"""Latent diffusion backbones (SD 1.5 / 2.1-base / XL) and the pixel CelebA-HQ DDPM, on tiny models.

Every real code path runs on the tiny random-weight miniatures of ``alm.backbones.tiny``: built from
config (the CLIP tokenizers' vocabularies written by that module, no hub), saved in the real
checkpoints' layout into a temporary ``ALM_CACHE_DIR``, then loaded through the config
(``backbone=<name>-tiny``) by the same loader as the real checkpoints. Covered: loading, VAE
encode/decode, text conditions, batched eps with mixed conditions, DDIM inversion, every inpainting
method end to end through the runner, equality with diffusers' own pipelines, missing-checkpoint
errors, and the fetch script's file selection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alm.backbones import tiny  # noqa: E402
from alm.backbones.checkpoints import CHECKPOINTS, select_files  # noqa: E402
from alm.backbones.diffusers_unet import DiffusersUNet, resolve_dtype  # noqa: E402
from alm.backbones.latent import LatentDiffusion  # noqa: E402
from alm.config import compose  # noqa: E402
from alm.errors import CheckpointError, ConfigError  # noqa: E402
from alm.config import build_method  # noqa: E402
from alm.methods.base import Eval, Problem  # noqa: E402
from alm.rng import SampleGenerators  # noqa: E402
from alm.config import build  # noqa: E402
from alm.runner import run  # noqa: E402
from alm.sampling import evaluate, invert, reverse  # noqa: E402
from alm.schedule import make_schedule  # noqa: E402
from conftest import load_script  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FAMILIES = ("sd15-tiny", "sd21base-tiny", "sdxl-tiny", "ddpm_celebahq-tiny")
LATENT = ("sd15-tiny", "sd21base-tiny", "sdxl-tiny")


def _general_methods() -> list[str]:
    """Every inpainting method of conf/method/ that runs on any backbone (not exact: gmm only; not sd_inpaint;
    not the canvas methods, task=wide only: tests/test_wide.py)."""
    from alm.config import build

    names = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
    built = {m: build(compose([f"method={m}"]).method) for m in names}
    return [m for m in names if built[m].requires_backbone is None and built[m].requires_task is None]


METHODS = _general_methods()
PROMPTS = ["a photo of a cat", "a painting of a dog"]


@pytest.fixture(scope="module", autouse=True)
def tiny_cache(tmp_path_factory):
    """Tiny models are built once per test module, into a temporary cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALM_CACHE_DIR", str(tmp_path_factory.mktemp("alm_cache")))
        yield


_BACKBONES: dict[str, object] = {}


def backbone(name: str):
    """The backbone of ``conf/backbone/<name>.yaml``, built as the runner builds it (cached per module)."""
    if name not in _BACKBONES:
        _BACKBONES[name] = build(compose([f"backbone={name}", "device=cpu"]).backbone)
    return _BACKBONES[name]


def images(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


# --- building and loading ---------------------------------------------------------------------------

def test_tiny_models_are_deterministic_and_in_the_real_layout(tmp_path, monkeypatch):
    sd = tiny.ensure_tiny("sd15")
    for f in ("model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
              "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
              "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json"):
        assert (sd / f).is_file(), f
    assert not (sd / "tokenizer" / "tokenizer.json").exists()  # as SD repositories ship it: vocab + merges
    assert json.loads((sd / "scheduler" / "scheduler_config.json").read_text()) == tiny.SD_SCHEDULER
    xl = tiny.ensure_tiny("sdxl")
    assert json.loads((xl / "model_index.json").read_text())["force_zeros_for_empty_prompt"] is True
    assert json.loads((xl / "tokenizer_2" / "special_tokens_map.json").read_text())["pad_token"] == "!"
    inpaint = tiny.ensure_tiny("sd15-inpaint")
    assert json.loads((inpaint / "model_index.json").read_text())["_class_name"] == "StableDiffusionInpaintPipeline"
    assert json.loads((inpaint / "unet" / "config.json").read_text())["in_channels"] == 9
    assert (tiny.ensure_tiny("ddpm_celebahq") / "unet" / "diffusion_pytorch_model.bin").is_file()  # as google/ddpm-*
    # a second build elsewhere gives the same bytes; an existing build is reused, not rebuilt
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path))
    again = tiny.ensure_tiny("sd15")
    for f in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "tokenizer/vocab.json"):
        assert (again / f).read_bytes() == (sd / f).read_bytes(), f
    stamp = (again / tiny.MARKER).stat().st_mtime_ns
    assert tiny.ensure_tiny("sd15") == again and (again / tiny.MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="unknown tiny model"):
        tiny.ensure_tiny("sd99")


def test_the_tiny_tokenizer_is_clip_byte_level_bpe():
    tok = LatentDiffusion(path=str(tiny.ensure_tiny("sd15"))).tokenizers[0]
    ids = tok(["a photo of a cat", "zebra!"], padding="max_length", max_length=77, truncation=True).input_ids
    assert all(len(row) == 77 for row in ids)
    assert ids[0][0] == tok.bos_token_id and ids[0][6] == tok.eos_token_id  # 5 whole-word tokens in between
    assert tok.decode(ids[1][1:7]).replace(" ", "") == "zebra!"  # unknown words fall back to bytes


@pytest.mark.parametrize("name", FAMILIES)
def test_backbone_builds_encodes_decodes_and_inverts(name):
    bb = backbone(name)
    latent = name in LATENT
    assert isinstance(bb, LatentDiffusion if latent else DiffusersUNet)
    assert bb.data_shape == (3, 64, 64)
    assert bb.sample_shape == ((4, 16, 16) if latent else (3, 64, 64))
    assert bb.conditional == latent
    assert bb.scheduler_config["prediction_type"] == "epsilon"
    x = images()
    with torch.no_grad():
        z = bb.encode(x)
        out = bb.decode(z)
    assert z.shape == (2, *bb.sample_shape) and z.dtype == torch.float32
    assert out.shape == x.shape and out.dtype == torch.float32 and out.abs().max() <= 1
    mask = bb.mask_to_sample((torch.rand(2, 1, 64, 64) > 0.5).float())
    assert mask.shape == (2, 1, *bb.sample_shape[1:]) and set(mask.unique().tolist()) <= {0.0, 1.0}
    schedule = make_schedule(bb.scheduler_config, 3)
    traj = invert(bb, z, schedule, bb.make_cond(PROMPTS, 2))
    assert traj.shape == (3, 2, *bb.sample_shape) and torch.isfinite(traj).all()
    assert (traj[0] - z).abs().max() > (traj[-1] - z).abs().max()  # noisier at the first (highest) timestep


def test_latent_encode_is_the_scaled_posterior_mode_and_decode_its_inverse():
    bb = backbone("sd15-tiny")
    x = images()
    with torch.no_grad():
        want = bb.vae.encode(x).latent_dist.mode() * 0.18215
        assert torch.allclose(bb.encode(x), want)
        assert torch.allclose(bb.decode(want), bb.vae.decode(want / 0.18215).sample.clamp(-1, 1))
    assert backbone("sdxl-tiny").scaling_factor == 0.13025


def test_vae_switches_attention_and_resolution():
    path = str(tiny.ensure_tiny("sd15"))
    plain = LatentDiffusion(path=path)
    sliced = LatentDiffusion(path=path, vae_slicing=True, vae_tiling=True, attention="eager")
    assert sliced.vae.use_slicing and sliced.vae.use_tiling
    x = images(3)
    with torch.no_grad():
        assert torch.allclose(plain.encode(x), sliced.encode(x), atol=1e-5)
        z = plain.encode(x)
        assert torch.allclose(plain.decode(z), sliced.decode(z), atol=1e-5)
        t = torch.tensor([900, 500, 10])
        cond = plain.make_cond(PROMPTS + [None], 3)
        assert torch.allclose(plain.eps(z, t, cond), sliced.eps(z, t, cond), atol=1e-5)  # SDPA = eager attention
    big = LatentDiffusion(path=path, resolution=128)
    assert big.data_shape == (3, 128, 128) and big.sample_shape == (4, 32, 32)
    with pytest.raises(ConfigError, match="multiple of 8"):
        LatentDiffusion(path=path, resolution=60)
    with pytest.raises(ConfigError, match="attention"):
        LatentDiffusion(path=path, attention="flash")


def test_dtype_auto_and_explicit():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16") == torch.bfloat16
    bb = LatentDiffusion(path=str(tiny.ensure_tiny("sdxl")), dtype="bfloat16")
    assert bb.denoiser.model_dtype == torch.bfloat16 and bb.text_encoders[1].dtype == torch.bfloat16
    z = torch.randn(1, *bb.sample_shape)
    with torch.no_grad():
        assert bb.eps(z, torch.tensor([500]), bb.make_cond("a cat", 1)).dtype == torch.float32  # cast back
    # float16 keeps a force_upcast VAE (SDXL's) in float32; SD 1.5's has no such flag
    assert LatentDiffusion(path=str(tiny.ensure_tiny("sdxl")), dtype="float16").vae.dtype == torch.float32
    assert LatentDiffusion(path=str(tiny.ensure_tiny("sd15")), dtype="float16").vae.dtype == torch.float16
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("float8")


def test_v_prediction_is_converted_to_eps():
    """A v-prediction checkpoint (SD 2.x 768-v style) goes through DiffusersUNet's conversion."""
    bb = LatentDiffusion(path=str(tiny.ensure_tiny("sd21base")), prediction_type="v_prediction")
    assert bb.model_prediction_type == "v_prediction" and bb.scheduler_config["prediction_type"] == "epsilon"
    z = torch.randn(2, *bb.sample_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([800, 30])
    cond = bb.make_cond(PROMPTS, 2)
    from diffusers import DDIMScheduler

    ab = DDIMScheduler.from_config(bb.scheduler_config).alphas_cumprod[t].view(-1, 1, 1, 1)
    with torch.no_grad():
        v = bb.denoiser.model(z, t, encoder_hidden_states=cond).sample
        assert torch.allclose(bb.eps(z, t, cond), ab.sqrt() * v + (1 - ab).sqrt() * z, atol=1e-5)


def test_fp16_variant_files_load(tmp_path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny.ensure_tiny("sd15")), local_files_only=True)
    pipe.save_pretrained(str(tmp_path / "fp16"), variant="fp16")
    assert (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    bb = LatentDiffusion(path=str(tmp_path / "fp16"), variant="fp16")
    z = torch.randn(1, *bb.sample_shape)
    with torch.no_grad():
        want = backbone("sd15-tiny").eps(z, torch.tensor([10]), backbone("sd15-tiny").make_cond("a cat", 1))
        assert torch.allclose(bb.eps(z, torch.tensor([10]), bb.make_cond("a cat", 1)), want, atol=1e-6)
    with pytest.raises(CheckpointError, match="backbone.variant=fp16") as info:
        LatentDiffusion(path=str(tmp_path / "fp16"))
    assert "\n" not in str(info.value)


# --- conditions -------------------------------------------------------------------------------------

def test_sd_prompts_and_the_empty_prompt():
    bb = backbone("sd15-tiny")
    cond = bb.make_cond([PROMPTS[0], None], 2)
    assert cond.shape == (2, 77, 32)
    assert torch.equal(cond[1], bb.null_cond(1)[0])  # None = the empty prompt = the CFG null condition
    assert not torch.allclose(cond[0], cond[1])
    assert torch.equal(bb.make_cond(PROMPTS[0], 3)[2], cond[0])  # one string for the batch
    with pytest.raises(ConfigError, match="text prompts"):
        bb.make_cond([3, 4], 2)
    with pytest.raises(ConfigError, match="prompts for a batch"):
        bb.make_cond(PROMPTS, 3)


def test_sdxl_condition_has_pooled_embeds_and_time_ids():
    bb = backbone("sdxl-tiny")
    cond = bb.make_cond([PROMPTS[0], None], 2)
    assert set(cond) == {"encoder_hidden_states", "text_embeds", "time_ids"}
    assert cond["encoder_hidden_states"].shape == (2, 77, 64)  # both encoders' 32 channels
    assert cond["text_embeds"].shape == (2, 32)
    assert cond["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]] * 2
    null = bb.null_cond(2)  # force_zeros_for_empty_prompt: zero text, same time ids (as its pipeline)
    assert null["encoder_hidden_states"].abs().max() == 0 and null["text_embeds"].abs().max() == 0
    assert torch.equal(null["time_ids"], cond["time_ids"])
    assert cond["encoder_hidden_states"][1].abs().max() > 0  # a None prompt is the encoded empty prompt


@pytest.mark.parametrize("name", ("sd15-tiny", "sdxl-tiny"))
def test_one_batched_call_with_mixed_conditions_equals_separate_calls(name):
    """The core evaluates a step's terms (cond / null, Y / E) in one forward call: same numbers."""
    bb = backbone(name)
    y = torch.randn(2, *bb.sample_shape, generator=torch.Generator().manual_seed(1))
    e = torch.randn(2, *bb.sample_shape, generator=torch.Generator().manual_seed(2))
    cond, null = bb.make_cond(PROMPTS, 2), bb.null_cond(2)
    with torch.no_grad():
        batched = evaluate(bb, [Eval(y), Eval(y, conditional=False), Eval(e)], 501, cond, null)
        t = torch.full((2,), 501)
        separate = [bb.eps(y, t, cond), bb.eps(y, t, null), bb.eps(e, t, cond)]
    for a, b in zip(batched, separate):
        assert (a - b).abs().max() <= 1e-5


# --- every method, end to end through the runner -----------------------------------------------------

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "labels.csv").write_text(f"file,label\n0.png,{PROMPTS[0]}\n1.png,{PROMPTS[1]}\n")
    return folder


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", FAMILIES)
def test_every_method_runs_on_every_backbone(name, method, image_folder, tmp_path):
    cfg = compose([
        f"backbone={name}", f"method={method}", "dataset=image_folder", f"dataset.path={image_folder}",
        "dataset.resolution=64", "dataset.labels=labels.csv", "mask=center", "num_samples=2", "batch_size=2",
        "sampler.steps=2", "sampler.guidance=7.5", "task.blend=true", "task.blend_kernel=5", "progress=false", "device=cpu",
    ])
    summary = run(cfg, tmp_path)
    assert summary["samples"] == 2
    for i in range(2):
        sample = torch.load(tmp_path / "samples" / f"{i:05d}.pt", weights_only=False)
        assert sample["output"].shape == (3, 64, 64) and torch.isfinite(sample["output"]).all()
        assert sample["label"] == PROMPTS[i]


# --- the same numbers as diffusers' pipelines ----------------------------------------------------------

@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=("float64", "float32"))
@pytest.mark.parametrize("name", ("sd15", "sdxl"))
def test_ddim_cfg_sampling_equals_the_diffusers_pipeline(name, dtype):
    """Our DDIM + CFG loop (method ddim through alm.sampling.reverse) against StableDiffusion(XL)Pipeline
    with DDIMScheduler (eta 0), the same initial latents, prompts, guidance 7.5, 10 steps.

    float64 (networks and the scheduler's alpha tables): equal up to rounding. float32: diffusers
    computes its coefficients in float32, we in float64; the random network amplifies those ulp and
    its latents grow to |x| ~ 30, so the tolerance is relative to the latents' magnitude."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = str(tiny.ensure_tiny(name))
    bb = LatentDiffusion(path=folder, dtype=dtype)
    cls = StableDiffusionXLPipeline if name == "sdxl" else StableDiffusionPipeline
    extra = {} if name == "sdxl" else {"safety_checker": None}
    pipe = cls.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False, **extra).to(dtype)
    pipe.scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    if dtype == torch.float64:
        pipe.scheduler.alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
        pipe.scheduler.final_alpha_cumprod = pipe.scheduler.final_alpha_cumprod.double()
    pipe.set_progress_bar_config(disable=True)

    shape = bb.sample_shape
    problem = Problem(x0=torch.zeros(2, *shape, dtype=dtype), mask=torch.ones(2, 1, *shape[1:], dtype=dtype),
                      cond=bb.make_cond(PROMPTS, 2))
    method = build_method("ddim")
    y_T = method.init(problem, SampleGenerators(0, range(2)))
    with torch.no_grad():
        ours = reverse(bb, method, problem, make_schedule(bb.scheduler_config, 10), SampleGenerators(0, range(2)), guidance=7.5)
        theirs = pipe(PROMPTS, num_inference_steps=10, guidance_scale=7.5, latents=y_T.clone(), height=64, width=64,
                      output_type="latent").images
        image_ours = bb.decode(ours)
        image_theirs = pipe.vae.decode(theirs / pipe.vae.config.scaling_factor).sample.clamp(-1, 1)
    tol = 1e-10 if dtype == torch.float64 else 1e-4 * max(1.0, float(theirs.abs().max()))
    assert (ours - theirs).abs().max() <= tol
    assert (image_ours - image_theirs).abs().max() <= (1e-10 if dtype == torch.float64 else 1e-4)


# --- missing checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ("sd15", "sd21base", "sdxl", "ddpm_celebahq"))
def test_missing_checkpoint_is_one_line_naming_the_fetch_command(name, empty_hf_cache):
    cfg = compose([f"backbone={name}", "device=cpu"])
    with pytest.raises(CheckpointError) as info:
        build(cfg.backbone)
    message = str(info.value)
    assert "\n" not in message
    assert CHECKPOINTS[name].repo_id in message and f"python scripts/fetch_weights.py {name}" in message
    assert str(empty_hf_cache) in message


def test_a_folder_that_is_not_a_pipeline_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = compose(["backbone=sd15", "device=cpu", f"backbone.path={tmp_path / 'empty'}"])
    with pytest.raises(CheckpointError) as info:
        build(cfg.backbone)
    assert "\n" not in str(info.value) and "not a diffusers pipeline" in str(info.value)
    assert "python scripts/fetch_weights.py sd15" in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        LatentDiffusion(path=str(tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    with pytest.raises(CheckpointError, match="missing vae/config.json"):
        LatentDiffusion(path=str(partial))
    with pytest.raises(ConfigError, match="inpainting UNet"):
        LatentDiffusion(path=str(tiny.ensure_tiny("sd15-inpaint")))


# --- configs and the fetch script --------------------------------------------------------------------

def test_every_backbone_config_carries_its_resolution():
    want = {"sd15": 512, "sd21base": 512, "sdxl": 1024, "ddpm_celebahq": 256}
    for path in sorted((CONF / "backbone").glob("*.yaml")):
        cfg = compose([f"backbone={path.stem}"]).backbone
        assert isinstance(cfg.resolution, int), path.stem
        if path.stem in want:
            assert cfg.resolution == want[path.stem]
            assert (cfg.repo_id, cfg.get("revision") or "main") == (CHECKPOINTS[path.stem].repo_id, CHECKPOINTS[path.stem].revision)
            assert cfg.dtype == "auto"
        if path.stem.endswith("-tiny"):
            assert cfg.resolution == 64
    assert build(compose(["backbone=gmm"]).backbone).data_shape[-1] == compose(["backbone=gmm"]).backbone.resolution


SD_LISTING = [
    ".gitattributes", "README.md", "model_index.json", "v1-5-pruned.ckpt", "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json", "safety_checker/model.safetensors", "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json", "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.fp16.safetensors",
]


def test_fetch_selects_one_weights_format_per_component():
    comps = CHECKPOINTS["sd15"].components
    plain = select_files(SD_LISTING, comps)
    assert "unet/diffusion_pytorch_model.safetensors" in plain and "text_encoder/model.safetensors" in plain
    assert not any(f.endswith((".bin", ".ckpt")) or "fp16" in f or "non_ema" in f or "safety" in f for f in plain)
    assert {"model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"} <= set(plain)
    half = select_files(SD_LISTING, comps, "fp16")
    assert sorted(f for f in half if f.endswith(".safetensors")) == [
        "text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors"]
    sharded = ["unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.json",
               "unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
               "scheduler/scheduler_config.json"]
    assert select_files(sharded, ("unet", "scheduler")) == sorted(sharded)
    ddpm = ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json", "unet/diffusion_pytorch_model.bin"]
    assert select_files(ddpm, CHECKPOINTS["ddpm_celebahq"].components) == sorted(ddpm)  # .bin when that is all
    with pytest.raises(ValueError, match="no fp16 weights for unet"):
        select_files(ddpm, ("unet",), "fp16")
    with pytest.raises(ValueError, match="no text_encoder_2/"):
        select_files(SD_LISTING, CHECKPOINTS["sdxl"].components)


def test_fetch_script_help_and_table(capsys):
    script = load_script("fetch_weights")
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    assert script.main(["--list"]) == 0
    out = capsys.readouterr().out
    for ckpt in CHECKPOINTS.values():
        assert ckpt.name in out and ckpt.repo_id in out
    assert script.main(["sd99"]) == 2
    assert script.main([]) == 2
