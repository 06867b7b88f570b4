"""LaVie's base text-to-video UNet and backbone (``alm/backbones/lavie.py``) on a tiny random instance.

Where the parameter names come from (LaVie's code, github.com/Vchitect/LaVie, ``base/``): ``pipelines/sample.py``
loads ``lavie_base.pt`` via ``download.find_model`` (``torch.load``, then ``["ema"]`` when present) into
``UNet3DConditionModel.from_pretrained_2d(<sd1.4>, "unet")`` with strict ``load_state_dict``. That constructor
itself loads SD 1.4's diffusers UNet weights STRICTLY after adding only the keys containing ``_temp``
(``models/unet.py``), so LaVie's key set is exactly: SD 1.4's diffusers ``UNet2DConditionModel`` keys, plus per
transformer block ``attn_temp.{to_q,to_k,to_v}.weight``, ``attn_temp.to_out.0.{weight,bias}``,
``attn_temp.time_rel_pos_bias.relative_attention_bias.weight`` (``nn.Embedding(32, heads)``, models/attention.py),
``attn_temp.rotary_emb.freqs`` (``rotary_embedding_torch.RotaryEmbedding(32)``: an ``nn.Parameter`` in every
version, one module shared by all blocks, so listed under each) and ``norm_temp.{weight,bias}``.
"""

from __future__ import annotations

import os
from functools import lru_cache

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alm import steps  # noqa: E402
from alm.backbones import lavie  # noqa: E402
from alm.backbones.lavie import LAVIE_CONFIG, TINY_CONFIG, LaVieUNet3D, load_lavie_unet  # noqa: E402
from alm.config import build, compose  # noqa: E402
from alm.errors import CheckpointError  # noqa: E402

FRAMES = 4
TEMP_SUFFIXES = ("attn_temp.to_q.weight", "attn_temp.to_k.weight", "attn_temp.to_v.weight", "attn_temp.to_out.0.weight",
                 "attn_temp.to_out.0.bias", "attn_temp.time_rel_pos_bias.relative_attention_bias.weight",
                 "attn_temp.rotary_emb.freqs", "norm_temp.weight", "norm_temp.bias")


pytestmark = pytest.mark.usefixtures("tiny_models_cache")  # conftest: this module's own cache of tiny models


@lru_cache(maxsize=1)
def real_state_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in LaVieUNet3D(LAVIE_CONFIG).state_dict().items()}


def tiny_unet(seed: int = 0, dtype=torch.float64) -> LaVieUNet3D:
    torch.manual_seed(seed)
    model = LaVieUNet3D(TINY_CONFIG).to(dtype).eval()
    with torch.no_grad():  # LaVie zero-initialises the temporal output: make the temporal branch matter
        for n, p in model.named_parameters():
            if "attn_temp.to_out.0" in n:
                p.copy_(torch.randn_like(p) * 0.3)
    return model


def zero_temporal(model: LaVieUNet3D) -> LaVieUNet3D:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "attn_temp.to_out.0" in n:
                p.zero_()
    return model


def run(model, z, t=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randn(z.shape[0], 5, TINY_CONFIG["cross_attention_dim"], generator=g, dtype=z.dtype)
    with torch.no_grad():
        return model(z, torch.tensor(t), ctx).sample


# --- (1) the key set: tiny == real layout == SD 1.4's UNet + the temporal keys -------------------------------

def test_tiny_has_the_real_models_parameter_names():
    real = real_state_shapes()
    tiny = LaVieUNet3D(TINY_CONFIG).state_dict()
    assert set(tiny) == set(real) and list(tiny) == list(real)  # same names, same order
    assert len(real) == 830
    with torch.device("meta"):
        n_params = sum(p.numel() for p in LaVieUNet3D(LAVIE_CONFIG).parameters())  # shared rotary table counted once
    assert n_params == 909_124_116


def test_real_keys_are_sd14_unet_keys_plus_temporal_keys():
    from diffusers import UNet2DConditionModel

    real = real_state_shapes()
    temporal = {k for k in real if "_temp" in k}
    assert all(k.endswith(TEMP_SUFFIXES) for k in temporal)
    assert len(temporal) == 16 * len(TEMP_SUFFIXES)  # 16 transformer blocks (down 6, mid 1, up 9)
    sd14 = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                layers_per_block=2, norm_num_groups=32)  # CompVis/stable-diffusion-v1-4 unet/config.json (the rest default)
    with torch.device("meta"):
        sd = {k: tuple(v.shape) for k, v in UNet2DConditionModel(**sd14).state_dict().items()}
    assert {k: v for k, v in real.items() if k not in temporal} == sd


# --- (2) names and shapes of the real checkpoint, as LaVie's modules define them ---------------------------

REAL_KEYS = {  # key: shape (C = 320 at level 0, 8 heads of 40 channels; text states 768)
    "conv_in.weight": (320, 4, 3, 3),
    "time_embedding.linear_1.weight": (1280, 320),
    "down_blocks.0.resnets.0.norm1.weight": (320,),
    "down_blocks.0.attentions.0.proj_in.weight": (320, 320, 1, 1),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight": (320, 320),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.to_q.weight": (320, 320),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.to_out.0.bias": (320,),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.time_rel_pos_bias.relative_attention_bias.weight": (32, 8),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn_temp.rotary_emb.freqs": (16,),
    "down_blocks.0.attentions.0.transformer_blocks.0.norm_temp.weight": (320,),
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
    "down_blocks.0.downsamplers.0.conv.weight": (320, 320, 3, 3),
    "down_blocks.3.resnets.1.conv2.weight": (1280, 1280, 3, 3),
    "mid_block.attentions.0.transformer_blocks.0.attn_temp.to_v.weight": (1280, 1280),
    "mid_block.resnets.1.time_emb_proj.weight": (1280, 1280),
    "up_blocks.0.resnets.0.conv_shortcut.weight": (1280, 2560, 1, 1),
    "up_blocks.0.upsamplers.0.conv.weight": (1280, 1280, 3, 3),
    "up_blocks.3.attentions.2.transformer_blocks.0.attn_temp.time_rel_pos_bias.relative_attention_bias.weight": (32, 8),
    "up_blocks.3.attentions.2.transformer_blocks.0.norm3.bias": (320,),
    "conv_norm_out.weight": (320,),
    "conv_out.weight": (4, 320, 3, 3),
}


def test_real_checkpoint_key_names_and_shapes():
    real = real_state_shapes()
    for key, shape in REAL_KEYS.items():
        assert real.get(key) == shape, key
    assert "time_rel_pos_bias.relative_attention_bias.weight" not in real  # no UNet-level bias: SD 1.4 sets no
    assert not any(k.startswith(("down_blocks.3.attentions", "up_blocks.0.attentions")) for k in real)  # plain levels


# --- (3) forward and the backbone -------------------------------------------------------------------------

def test_forward_keeps_the_clip_shape_also_off_the_downsampling_grid():
    model = tiny_unet(dtype=torch.float32)
    for shape in ((2, 4, 3, 16, 24), (1, 4, 2, 12, 20)):  # 12 x 20: the up blocks are given the skip sizes
        assert run(model, torch.randn(shape)).shape == shape


@pytest.fixture(scope="module")
def backbone():
    return build(compose(["backbone=lavie-tiny", "device=cpu", f"backbone.frames={FRAMES}"]).backbone)


def test_backbone_config_shapes_and_lavies_scheduler(backbone):
    assert isinstance(backbone, lavie.LaVieDiffusion) and isinstance(backbone.denoiser.model, LaVieUNet3D)
    assert backbone.sample_shape == (4, FRAMES, 8, 16) and backbone.data_shape == (3, FRAMES, 32, 64)
    s = backbone.scheduler_config
    assert (s["_class_name"], s["beta_schedule"], s["beta_start"], s["beta_end"], s["prediction_type"]) == (
        "DDPMScheduler", "linear", 0.0001, 0.02, "epsilon")
    real = compose(["backbone=lavie"]).backbone
    assert (real.frames, real.height, real.resolution, real.unet_repo_id) == (16, 320, 512, "YaohuiW/LaVie")
    assert real.repo_id == "CompVis/stable-diffusion-v1-4" and real.scheduler.beta_schedule == "linear"


def test_backbone_eps_with_cfg_is_lavies_guided_unet_call(backbone):
    z = torch.randn(2, *backbone.sample_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500, 500])
    cond = backbone.make_cond(["a cat", "a dog"], 2)
    guided = steps.cfg(backbone.eps(z, t, cond), backbone.eps(z, t, backbone.null_cond(2)), 7.5)
    assert guided.shape == z.shape and torch.isfinite(guided).all()
    # LaVie's pipeline: one UNet call on [uncond, cond] ("" prompt states), then uncond + g (cond - uncond)
    unet = backbone.denoiser.model
    with torch.no_grad():
        states = torch.cat([backbone.null_cond(2), cond])
        out = unet(torch.cat([z, z]), torch.cat([t, t]), encoder_hidden_states=states).sample
    uncond, text = out.chunk(2)
    torch.testing.assert_close(guided, uncond + 7.5 * (text - uncond), rtol=1e-4, atol=1e-5)
    assert (backbone.eps(z, t, cond) - backbone.eps(z, t, backbone.null_cond(2))).abs().max() > 1e-4  # the prompt matters


# --- (4) what holds frame by frame, and what does not ------------------------------------------------------

def test_one_frame_without_temporal_output_is_the_2d_sd_unet():
    from diffusers import UNet2DConditionModel

    model = zero_temporal(tiny_unet())
    sd = UNet2DConditionModel(
        sample_size=16, block_out_channels=TINY_CONFIG["block_out_channels"], layers_per_block=2, cross_attention_dim=32,
        attention_head_dim=2, norm_num_groups=8).to(torch.float64).eval()
    sd.load_state_dict({k: v for k, v in model.state_dict().items() if "_temp" not in k}, strict=True)
    z = torch.randn(2, 4, 1, 16, 24, dtype=torch.float64)
    ctx = torch.randn(2, 5, 32, dtype=torch.float64)
    with torch.no_grad():
        want = sd(z[:, :, 0], torch.tensor(37), encoder_hidden_states=ctx).sample
        got = model(z, torch.tensor(37), ctx).sample[:, :, 0]
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_without_temporal_output_frames_are_exchangeable_but_still_coupled():
    model = zero_temporal(tiny_unet())
    z = torch.randn(1, 4, FRAMES, 16, 24, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(run(model, z[:, :, perm]), run(model, z)[:, :, perm], rtol=1e-9, atol=1e-9)
    # a clip of identical frames: every frame is the one-frame (SD) output
    same = z[:, :, :1].expand_as(z).contiguous()
    torch.testing.assert_close(run(model, same), run(model, z[:, :, :1]).expand_as(z), rtol=1e-8, atol=1e-9)
    # NOT frame by frame in general: LaVie's ResnetBlock3D / conv_norm_out GroupNorms pool over the whole clip
    other = z.clone()
    other[:, :, 0] += 1.0
    assert (run(model, other)[:, :, 1:] - run(model, z)[:, :, 1:]).abs().max() > 1e-6


def test_temporal_attention_knows_frame_order():
    model = tiny_unet()
    z = torch.randn(1, 4, FRAMES, 16, 24, dtype=torch.float64)
    perm = torch.tensor([3, 2, 1, 0])
    assert (run(model, z[:, :, perm]) - run(model, z)[:, :, perm]).abs().max() > 1e-6


def test_relative_position_buckets_and_rotary_are_lavies():
    bias = lavie.RelativePositionBias(heads=2, num_buckets=32, max_distance=32)
    b = bias.buckets(20, torch.device("cpu"))
    # query i, key j: i - j = n > 0 -> bucket n (n < 8), 8 + floor(8 log(n/8)/log 4) capped at 15; n < 0 -> 16 + same
    want = {0: 0, 1: 1, 7: 7, 8: 8, 10: 9, 12: 10, 15: 11, 19: 12, -1: 17, -7: 23, -8: 24, -15: 27, -19: 28}
    for n, bucket in want.items():
        i, j = (n, 0) if n >= 0 else (0, -n)
        assert b[i, j].item() == bucket, n
    rot = lavie.RotaryEmbedding(8)
    q = torch.randn(3, 2, 5, 12, dtype=torch.float64)
    out = rot(q)
    pairs = torch.view_as_complex(q[..., :8].reshape(3, 2, 5, 4, 2).contiguous())
    angle = torch.arange(5, dtype=torch.float64)[:, None] * rot.freqs.double()[None, :]
    torch.testing.assert_close(torch.view_as_real(pairs * torch.polar(torch.ones_like(angle), angle)).flatten(-2), out[..., :8])
    torch.testing.assert_close(out[..., 8:], q[..., 8:])  # channels past the rotary dimension pass unchanged
    torch.testing.assert_close(rot.freqs, 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8))


# --- (5) the checkpoint file ----------------------------------------------------------------------------

def test_a_missing_checkpoint_is_one_line_naming_the_file(tmp_path):
    missing = tmp_path / "lavie_base.pt"
    with pytest.raises(CheckpointError) as err:
        load_lavie_unet(missing, TINY_CONFIG)
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "lavie_base.pt" in msg
    assert "python scripts/fetch_weights.py lavie" in msg and "huggingface.co/YaohuiW/LaVie" in msg
    tiny = dict(path=str(tiny_sd()), unet_config={k: TINY_CONFIG[k] for k in ("block_out_channels", "attention_head_dim",
                "norm_num_groups", "rotary_dim")}, frames=2, height=32, resolution=64, dtype="float32")
    for where in (dict(unet_checkpoint=str(missing)), dict(unet_repo_id="YaohuiW/LaVie", cache_dir=str(tmp_path))):
        with pytest.raises(CheckpointError) as err:  # the backbone: the same line, before anything heavy
            lavie.LaVieDiffusion(**tiny, **where)
        assert "\n" not in str(err.value) and "python scripts/fetch_weights.py lavie" in str(err.value)
        assert "lavie_base.pt" in str(err.value)


def tiny_sd():
    from alm.backbones.tiny import ensure_tiny

    return ensure_tiny("sd15")


def test_a_checkpoint_of_another_layout_says_how_many_keys_differ(tmp_path):
    state = LaVieUNet3D(TINY_CONFIG).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv_in.weight"], state["conv_in.bias"]
    path = tmp_path / "lavie_base.pt"
    torch.save({"ema": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_lavie_unet(path, TINY_CONFIG)
    msg = str(err.value)
    assert "\n" not in msg and "2 missing (first: conv_in.weight)" in msg and "1 unexpected (first: extra.weight)" in msg
    good = tmp_path / "plain.pt"  # a bare state dict (no "ema") loads too, as LaVie's find_model reads it
    model = tiny_unet(dtype=torch.float32)
    torch.save(model.state_dict(), good)
    loaded = load_lavie_unet(good, TINY_CONFIG)
    z = torch.randn(1, 4, 2, 16, 24)
    torch.testing.assert_close(run(loaded, z), run(model, z))
