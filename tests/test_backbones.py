"""The diffusers UNet backbone: loading (folder, pipeline, local HF cache), conditions, errors.

Tiny random-weight models built from config after ``torch.manual_seed(0)``; the Hugging Face hub is
never contacted (``HF_HUB_OFFLINE=1``; cache look-ups go to temporary folders).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DConditionModel, UNet2DModel  # noqa: E402

from alm import steps  # noqa: E402
from alm.backbones.diffusers_unet import DiffusersUNet  # noqa: E402
from alm.errors import CheckpointError, ConfigError  # noqa: E402
from alm.methods.base import Method, Problem, StepContext  # noqa: E402
from alm.rng import SampleGenerators  # noqa: E402
from alm.sampling import reverse  # noqa: E402
from alm.schedule import make_schedule  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"
SIZE = 16


def tiny_unet(**kw) -> UNet2DModel:
    torch.manual_seed(0)
    cfg = dict(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    cfg.update(kw)
    return UNet2DModel(**cfg).eval()


def tiny_cond_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=SIZE, in_channels=4, out_channels=4, cross_attention_dim=32, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1, attention_head_dim=8, norm_num_groups=8,
    ).eval()


def ddpm_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)


class _Guided(Method):
    """Plain DDIM with classifier-free guidance, over the plug-in protocol."""

    name = "guided_test"
    uses_observation = False

    def step(self, y, ctx: StepContext):
        e = ctx.guided((yield ctx.guided_evals(y)))
        return ctx.base_step(y, e)


def _sample(backbone, cond, guidance: float, batch: int = 2) -> torch.Tensor:
    shape = backbone.sample_shape
    problem = Problem(x0=torch.zeros(batch, *shape), mask=torch.ones(batch, 1, *shape[1:]), cond=cond)
    schedule = make_schedule(backbone.scheduler_config, 4)
    with torch.no_grad():
        return reverse(backbone, _Guided(), problem, schedule, SampleGenerators(0, range(batch)), guidance=guidance)


def _raw_eps(model, z, t, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(z, t, **kw).sample


@pytest.fixture
def z() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def t() -> torch.Tensor:
    return torch.tensor([999, 500, 3])


# --- loading ----------------------------------------------------------------------------------------

def test_load_from_unet_folder(tmp_path, z, t):
    model = tiny_unet()
    model.save_pretrained(tmp_path / "m")
    ddpm_scheduler().save_pretrained(tmp_path / "m")  # scheduler_config.json beside config.json
    backbone = DiffusersUNet(path=str(tmp_path / "m"))
    assert backbone.sample_shape == (3, SIZE, SIZE) and backbone.data_shape == (3, SIZE, SIZE)
    assert not backbone.conditional and backbone.null_cond(3) is None and backbone.make_cond([1, 2, 3], 3) is None
    assert backbone.scheduler_config["beta_schedule"] == "linear"
    with torch.no_grad():
        assert torch.allclose(backbone.eps(z, t, None), _raw_eps(model, z, t), atol=1e-6)


def test_load_from_pipeline_folder(tmp_path, z, t):
    model = tiny_unet()
    DDPMPipeline(unet=model, scheduler=ddpm_scheduler()).save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "unet" / "config.json").is_file()
    want = _raw_eps(model, z, t)
    for path in (tmp_path / "pipe", tmp_path / "pipe" / "unet"):  # the pipeline, or its unet/ folder
        backbone = DiffusersUNet(path=str(path))
        assert backbone.scheduler_config["_class_name"] == "DDPMScheduler"
        with torch.no_grad():
            assert torch.allclose(backbone.eps(z, t, None), want, atol=1e-6)


def test_load_from_local_hf_cache(tmp_path, monkeypatch, z, t):
    """A repo id resolves through refs/main -> snapshots/<commit> of the (temporary) HF cache."""
    cache = tmp_path / "hf" / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--tiny--ddpm" / "snapshots" / commit
    model = tiny_unet()
    DDPMPipeline(unet=model, scheduler=ddpm_scheduler()).save_pretrained(snap)
    (cache / "models--tiny--ddpm" / "refs").mkdir(parents=True)
    (cache / "models--tiny--ddpm" / "refs" / "main").write_text(commit)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    backbone = DiffusersUNet(repo_id="tiny/ddpm")
    with torch.no_grad():
        assert torch.allclose(backbone.eps(z, t, None), _raw_eps(model, z, t), atol=1e-6)
    assert DiffusersUNet(repo_id="tiny/ddpm", revision=commit).sample_shape == (3, SIZE, SIZE)
    with pytest.raises(CheckpointError, match="revision 'v2'"):
        DiffusersUNet(repo_id="tiny/ddpm", revision="v2")


def test_hydra_config_instantiates(tmp_path, z, t):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    model = tiny_unet()
    DDPMPipeline(unet=model, scheduler=ddpm_scheduler()).save_pretrained(tmp_path / "pipe")
    for group in ("unet_pixel", "ddpm_cifar10"):
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            cfg = compose(overrides=[f"+backbone={group}", f"backbone.path={tmp_path / 'pipe'}"])
        backbone = instantiate(cfg.backbone)
        assert backbone.name == group
        with torch.no_grad():
            assert torch.allclose(backbone.eps(z, t, None), _raw_eps(model, z, t), atol=1e-6)


def test_dtype_bfloat16(tmp_path, z, t):
    model = tiny_unet()
    DDPMPipeline(unet=model, scheduler=ddpm_scheduler()).save_pretrained(tmp_path / "pipe")
    backbone = DiffusersUNet(path=str(tmp_path / "pipe"), dtype="bfloat16")
    assert backbone.model_dtype == torch.bfloat16
    with torch.no_grad():
        out = backbone.eps(z, t, None)
    assert out.dtype == torch.float32  # cast back to z's dtype
    assert (out - _raw_eps(model, z, t)).abs().max() < 0.1  # bf16 rounding only


# --- errors -----------------------------------------------------------------------------------------

def test_missing_repo_is_one_line_and_quick(tmp_path, monkeypatch):
    empty = tmp_path / "empty_hf"
    empty.mkdir()
    monkeypatch.setenv("HF_HOME", str(empty))
    monkeypatch.setenv("HF_HUB_CACHE", str(empty / "hub"))
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        DiffusersUNet(repo_id="google/ddpm-cifar10-32")
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "\n" not in message
    assert "google/ddpm-cifar10-32" in message and str(empty / "hub") in message and "backbone.path" in message


def test_not_a_model_folder(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a diffusers model"):
        DiffusersUNet(path=str(tmp_path / "junk"))
    with pytest.raises(CheckpointError, match="does not exist"):
        DiffusersUNet(path=str(tmp_path / "nowhere"))
    # a config without weights: the loader's long error becomes one line
    tiny_unet().save_config(tmp_path / "noweights")
    with pytest.raises(CheckpointError) as info:
        DiffusersUNet(path=str(tmp_path / "noweights"), scheduler={"num_train_timesteps": 1000})
    assert "\n" not in str(info.value) and "noweights" in str(info.value)
    # a diffusers config of another class
    DDPMScheduler().save_pretrained(tmp_path / "sched")
    (tmp_path / "sched" / "scheduler_config.json").rename(tmp_path / "sched" / "config.json")
    with pytest.raises(CheckpointError, match="not one of"):
        DiffusersUNet(path=str(tmp_path / "sched"))


def test_missing_scheduler_config_is_config_error(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "m")
    with pytest.raises(ConfigError, match="backbone.scheduler"):
        DiffusersUNet(path=str(tmp_path / "m"))
    assert DiffusersUNet(path=str(tmp_path / "m"), scheduler={"num_train_timesteps": 1000}).scheduler_config


# --- conditions -------------------------------------------------------------------------------------

def test_class_conditional_null_label_and_cfg(z, t):
    model = tiny_unet(num_class_embeds=11)  # 10 classes + the null class (label 10)
    backbone = DiffusersUNet.from_model(model, ddpm_scheduler().config)
    assert backbone.conditional and backbone.num_classes == 10 and backbone.null_class == 10
    null = backbone.null_cond(3)
    assert null.tolist() == [10, 10, 10]
    cond = backbone.make_cond([1, 2, 3], 3)
    assert cond.dtype == torch.long and cond.tolist() == [1, 2, 3]
    assert backbone.make_cond(4, 2).tolist() == [4, 4]
    with torch.no_grad():
        e_c = backbone.eps(z, t, cond)
        e_u = backbone.eps(z, t, null)
        assert torch.allclose(e_u, _raw_eps(model, z, t, class_labels=null), atol=1e-6)
        assert torch.allclose(backbone.eps(z, t, None), e_u)  # no cond = the null class
    assert (e_c - e_u).abs().max() > 1e-4
    assert not torch.allclose(steps.cfg(e_c, e_u, 3.0), e_c)
    labels = backbone.make_cond([1, 2], 2)
    assert (_sample(backbone, labels, 3.0) - _sample(backbone, labels, 1.0)).abs().max() > 1e-4
    with pytest.raises(ConfigError, match="outside"):
        backbone.make_cond([10], 1)
    with pytest.raises(ConfigError, match="class ids"):
        backbone.make_cond(["a cat"], 1)


def test_class_conditional_without_null_class():
    backbone = DiffusersUNet.from_model(tiny_unet(num_class_embeds=10), ddpm_scheduler().config, num_classes=10)
    assert backbone.null_class is None
    with pytest.raises(ConfigError, match="no null class"):
        backbone.null_cond(2)
    with pytest.raises(ConfigError, match="does not fit"):
        DiffusersUNet.from_model(tiny_unet(num_class_embeds=10), ddpm_scheduler().config, num_classes=5)


def test_cross_attention_unet_with_tensor_cond():
    model = tiny_cond_unet()
    backbone = DiffusersUNet.from_model(model, DDIMScheduler().config, cond_length=4)
    assert backbone.conditional and backbone.sample_shape == (4, SIZE, SIZE)
    states = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(1))
    z = torch.randn(2, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    tt = torch.tensor([900, 10])
    with torch.no_grad():
        out = backbone.eps(z, tt, backbone.make_cond(states, 2))
        assert out.shape == z.shape
        assert torch.allclose(out, model(z, tt, encoder_hidden_states=states).sample, atol=1e-6)
        e_null = backbone.eps(z, tt, backbone.null_cond(2))
        assert torch.allclose(e_null, model(z, tt, encoder_hidden_states=torch.zeros(2, 4, 32)).sample, atol=1e-6)
    assert (out - e_null).abs().max() > 1e-4
    assert (_sample(backbone, states, 5.0) - _sample(backbone, states, 1.0)).abs().max() > 1e-4
    # a provided null embedding, and conditions of the wrong shape
    null = torch.randn(4, 32)
    assert torch.equal(DiffusersUNet.from_model(model, DDIMScheduler().config, null_embedding=null).null_cond(3)[2], null)
    with pytest.raises(ConfigError, match="expected"):
        backbone.make_cond(torch.randn(2, 7, 32), 2)
    with pytest.raises(ConfigError, match="text encoder"):
        backbone.make_cond(["a cat", "a dog"], 2)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_prediction_type_converted_to_eps(prediction_type):
    """eps() of a v/x0 model, through our DDIM step, equals DDIMScheduler.step on the raw output."""
    model = tiny_unet().double()
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, prediction_type=prediction_type)
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
    sched.set_timesteps(10)
    backbone = DiffusersUNet.from_model(model, sched.config)
    assert backbone.scheduler_config["prediction_type"] == "epsilon"
    assert backbone.model_prediction_type == prediction_type
    schedule = make_schedule(backbone.scheduler_config, 10)
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            ours = steps.ddim_step(x, backbone.eps(x, t.expand(2), None), schedule.ab[i], schedule.ab_prev[i])
            theirs = sched.step(model(x, t).sample, t, x).prev_sample
            assert (ours - theirs).abs().max() <= 1e-8
            x = theirs
    with pytest.raises(ConfigError, match="prediction_type"):
        DiffusersUNet.from_model(model, {**sched.config, "prediction_type": "flow"})


def test_batch_independence(z, t):
    backbone = DiffusersUNet.from_model(tiny_unet(num_class_embeds=11), ddpm_scheduler().config)
    z4 = torch.cat([z, z[:1] * 0.5])
    t4 = torch.cat([t, torch.tensor([250])])
    labels = torch.tensor([0, 3, 7, backbone.null_class])
    with torch.no_grad():
        batched = backbone.eps(z4, t4, labels)
        alone = torch.cat([backbone.eps(z4[i : i + 1], t4[i : i + 1], labels[i : i + 1]) for i in range(4)])
    assert (batched - alone).abs().max() <= 1e-5
