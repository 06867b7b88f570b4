"""CondMDI's motion U-Net (``alm/backbones/temporal_unet.py``) and its backbone (``alm/backbones/condmdi.py``).

Facts from CondMDI's code (github.com/setarehc/diffusion-motion-inbetweening, ``model/mdm_unet.py``,
``utils/model_util.py``, ``diffusion/gaussian_diffusion.py``): ``model000500000.pt`` holds ``{'model', 'model_avg'}``
without ``clip_model.*`` keys (198 tensors: 196 parameters, 233,507,079 values, and the ``pe`` table under two
names); the null text is ``embed_text(zeros)``; the input is padded on the right to 224 frames and cropped; cosine
betas capped at 0.999; x0 prediction. The real network is only built on the meta device here (0.9 GB); its
computation is checked on miniatures in the same layout.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from alm.backbones import condmdi  # noqa: E402
from alm.backbones.base import cat_cond, index_cond  # noqa: E402
from alm.backbones.checkpoints import CHECKPOINTS  # noqa: E402
from alm.backbones.condmdi import (  # noqa: E402
    SCHEDULER_CONFIG, CondMDIMotion, cosine_alphas_cumprod, cosine_betas, eps_to_x0, load_network, x0_to_eps,
)
from alm.backbones.temporal_unet import CONDMDI_CONFIG, CondMDINetwork, layout_markdown, layout_rows, source_of  # noqa: E402
from alm.config import build, compose  # noqa: E402
from alm.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from alm.schedule import make_schedule  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(latent_dim=16, clip_dim=32, pad_frames=72)  # the condmdi-tiny network
TEXT = {"embed_dim": 32, "width": 32, "layers": 2, "heads": 2}


def real_network() -> CondMDINetwork:
    with torch.device("meta"):
        return CondMDINetwork(**CONDMDI_CONFIG)


def tiny_network(seed: int = 0, dtype=torch.float32, **kw) -> CondMDINetwork:
    torch.manual_seed(seed)
    return CondMDINetwork(**{**TINY, **kw}).to(dtype).eval()


@pytest.fixture(scope="module")
def tiny() -> CondMDIMotion:
    """The condmdi-tiny backbone as a run builds it (no file at all)."""
    return build(compose(["backbone=condmdi-tiny", "device=cpu"]).backbone)


@pytest.fixture(scope="module")
def tiny64() -> CondMDIMotion:
    """The same miniature in float64, for exact checks."""
    return CondMDIMotion(random_weights=True, resolution=64, pad_frames=72, latent_dim=16, text_encoder=TEXT,
                         clip_precision="fp32", dtype="float64")


# --- the layout ---------------------------------------------------------------------------------------

def test_real_layout_on_meta_is_condmdis_checkpoint():
    net = real_network()
    sd = net.state_dict()
    assert len(sd) == 198 and sum(1 for _ in net.parameters()) == 196
    assert sum(p.numel() for p in net.parameters()) == 233_507_079  # "about 233.5 M"
    assert [k for k in sd if k.endswith(".pe")] == ["sequence_pos_encoder.pe", "embed_timestep.sequence_pos_encoder.pe"]
    want = {  # hand-derived from CondMDI's constructors: latent 512, channels 1024 at every level, 263 features
        "sequence_pos_encoder.pe": (5000, 1, 512), "unet.time_mlp.0.weight": (2048, 512),
        "unet.downs.0.0.blocks.0.block1.0.weight": (1024, 263, 5), "unet.downs.0.0.residual_conv.weight": (1024, 263, 1),
        "unet.downs.0.0.time_mlp.1.weight": (2048, 512), "unet.downs.2.3.conv.weight": (1024, 1024, 3),
        "unet.ups.0.0.blocks.0.block1.0.weight": (1024, 2048, 5), "unet.ups.0.0.residual_conv.weight": (1024, 2048, 1),
        "unet.ups.2.3.conv.weight": (1024, 1024, 4), "unet.mid_block2.blocks.1.block.2.bias": (1024,),
        "unet.final_conv.1.weight": (263, 1024, 1), "embed_timestep.time_embed.2.weight": (512, 512),
        "embed_text.weight": (512, 512), "embed_text.bias": (512,),
    }
    assert {k: tuple(sd[k].shape) for k in want} == want
    absent = ["unet.downs.3.3.conv.weight", "unet.ups.3.0.blocks.0.block1.0.weight", "unet.downs.1.0.residual_conv.weight",
              "unet.mid_attn.fn.norm.g", "clip_model.positional_embedding"]
    assert not [k for k in absent if k in sd]
    # state-dict order: CondMDI registers sequence_pos_encoder, unet (time_mlp, downs, ups, mids, final), embed_*
    order = [re.sub(r"\..*", "", k[5:]) if k.startswith("unet.") else k.split(".")[0] for k in sd]
    assert list(dict.fromkeys(order)) == ["sequence_pos_encoder", "time_mlp", "downs", "ups", "mid_block1", "mid_block2",
                                          "final_conv", "embed_timestep", "embed_text"]


def test_tiny_layout_has_the_real_names_and_ranks(tiny):
    real, small = real_network().state_dict(), tiny.net.state_dict()
    assert list(small) == list(real)
    assert all(small[k].dim() == real[k].dim() for k in real)
    assert tuple(small["unet.ups.0.0.blocks.0.block1.0.weight"].shape) == (32, 64, 5)
    assert tuple(small["embed_text.weight"].shape) == (16, 32)  # latent 16, CLIP width 32


def test_layout_doc_is_generated_from_the_code():
    doc = open(os.path.join(ROOT, "docs", "condmdi_layout.md"), encoding="utf-8").read()
    assert doc == layout_markdown(), "regenerate: python -c \"from alm.backbones.temporal_unet import layout_markdown; " \
                                     "open('docs/condmdi_layout.md','w').write(layout_markdown())\""
    rows = layout_rows(real_network())
    assert len(rows) == 198 and all(f"| `{name}` | {shape} |" in doc for name, shape, _ in rows)
    assert "233,507,079" in doc
    assert source_of("unet.ups.1.0.blocks.0.block1.2.weight") == "L288 -> L84 `Conv1dAdaGNBlock` GroupNorm(8)"
    with pytest.raises(ConfigError, match="no source line"):
        source_of("clip_model.token_embedding.weight")


def test_adagn_block_by_hand():
    """``ResidualTemporalBlock`` (AdaGN): the conditioning Linear's FIRST half scales, the second shifts."""
    from alm.backbones.temporal_unet import ResidualTemporalBlock

    torch.manual_seed(6)
    block = ResidualTemporalBlock(4, 16, dim=3, kernel_size=5, groups=8).double()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x, c = torch.randn(2, 4, 9, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    sd = {k: v for k, v in block.state_dict().items()}
    h = F.group_norm(F.conv1d(x, sd["blocks.0.block1.0.weight"], sd["blocks.0.block1.0.bias"], padding=2), 8,
                     sd["blocks.0.block1.2.weight"], sd["blocks.0.block1.2.bias"])
    ss = F.linear(F.mish(c), sd["time_mlp.1.weight"], sd["time_mlp.1.bias"])
    scale, shift = ss[:, :16, None], ss[:, 16:, None]
    h = F.mish(h * (1 + scale) + shift)
    h = F.mish(F.group_norm(F.conv1d(h, sd["blocks.1.block.0.weight"], sd["blocks.1.block.0.bias"], padding=2), 8,
                            sd["blocks.1.block.2.weight"], sd["blocks.1.block.2.bias"]))
    want = h + F.conv1d(x, sd["residual_conv.weight"], sd["residual_conv.bias"])
    assert torch.allclose(block(x, c), want, rtol=0, atol=1e-12)


def test_time_embedding_by_hand():
    net = tiny_network(7, torch.float64)
    pe = net.sequence_pos_encoder.pe
    assert pe is net.embed_timestep.sequence_pos_encoder.pe and pe.shape == (5000, 1, 16)
    for t, i in ((0, 0), (3, 2), (999, 7)):
        w = math.exp(-2 * i * math.log(10000.0) / 16)
        assert pe[t, 0, 2 * i].item() == pytest.approx(math.sin(t * w), abs=2e-4)  # float32 table, as CondMDI's
        assert pe[t, 0, 2 * i + 1].item() == pytest.approx(math.cos(t * w), abs=2e-4)
    te = net.embed_timestep.time_embed
    t = torch.tensor([0, 999])
    assert torch.allclose(net.embed_timestep(t), te[2](F.silu(te[0](pe[t, 0]))), rtol=0, atol=1e-14)


def test_bad_network_configs_are_config_errors():
    with pytest.raises(ConfigError, match="multiple of 8"):
        CondMDINetwork(latent_dim=16, pad_frames=196)  # 196 = 4 * 49: three stride-2 convs need a multiple of 8
    with pytest.raises(ConfigError, match="GroupNorm"):
        CondMDINetwork(latent_dim=6, dim_mults=(1, 2))
    with pytest.raises(ConfigError, match="exceed"):
        tiny_network()(torch.zeros(1, 263, 1, 80), torch.zeros(1), torch.zeros(1, 32))


# --- weights ------------------------------------------------------------------------------------------

def _save_checkpoint(folder, avg: CondMDINetwork, raw: CondMDINetwork, args=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model000500000.pt"
    torch.save({"model": raw.state_dict(), "model_avg": avg.state_dict()}, path)
    if args is not None:
        (folder / "args.json").write_text(json.dumps(args))
    return path


def test_strict_load_takes_model_avg(tmp_path):
    avg, raw = tiny_network(1), tiny_network(2)
    path = _save_checkpoint(tmp_path / "condmdi_uncond", avg, raw)
    net = load_network(path, TINY)
    x, t, text = torch.randn(2, 263, 1, 64), torch.tensor([5, 900]), torch.randn(2, 32)
    assert torch.equal(net(x, t, text), avg(x, t, text)) and not torch.equal(net(x, t, text), raw(x, t, text))
    assert all(not p.requires_grad for p in net.parameters())
    # the backbone takes the network from the file (a random text tower, stand-in statistics)
    bb = CondMDIMotion(checkpoint=str(path), random_weights=True, resolution=64, pad_frames=72, latent_dim=16,
                       text_encoder=TEXT, clip_precision="fp32")
    assert all(torch.equal(v, avg.state_dict()[k]) for k, v in bb.net.state_dict().items())


def test_checkpoints_that_do_not_fit_are_one_line_errors(tmp_path):
    good = tiny_network(1).state_dict()
    cases = {
        "extra": ({**good, "unet.mid_attn.fn.norm.g": torch.ones(1, 32, 1)}, "1 unexpected"),
        "missing": ({k: v for k, v in good.items() if k != "embed_text.bias"}, "1 missing"),
        "shape": ({**good, "embed_text.weight": torch.zeros(16, 512)}, "shape mismatch"),
    }
    for name, (state, match) in cases.items():
        path = tmp_path / f"{name}.pt"
        torch.save({"model_avg": state}, path)
        with pytest.raises(CheckpointError, match=match) as err:
            load_network(path, TINY)
        assert "\n" not in str(err.value)
    # CondMDI drops clip_model.* when saving; a file that kept them still loads (load_model_wo_clip)
    torch.save({"model_avg": {**good, "clip_model.positional_embedding": torch.zeros(77, 512)}}, tmp_path / "clip.pt")
    load_network(tmp_path / "clip.pt", TINY)
    (tmp_path / "torn.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_network(tmp_path / "torn.pt", TINY)


def test_args_json_of_another_model_is_refused(tmp_path):
    path = _save_checkpoint(tmp_path / "randomframes", tiny_network(1), tiny_network(1),
                            args={"arch": "unet", "dataset": "humanml", "keyframe_conditioned": True, "latent_dim": 16,
                                  "dim_mults": [2, 2, 2, 2], "noise_schedule": "cosine"})
    with pytest.raises(CheckpointError, match="keyframe_conditioned=True"):
        CondMDIMotion(checkpoint=str(path), random_weights=True, resolution=64, pad_frames=72, latent_dim=16, text_encoder=TEXT)


def test_missing_files_are_one_line_errors(tmp_path):
    missing = tmp_path / "nowhere" / "model000500000.pt"
    with pytest.raises(CheckpointError) as err:
        CondMDIMotion(checkpoint=str(missing), stats_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "1B0PYpmCXXwV0a5mhkgea_J2pOwhYy-k5" in msg
    ckpt = _save_checkpoint(tmp_path / "c", tiny_network(1), tiny_network(1))
    _write_stats(tmp_path / "stats", np.zeros(263), np.ones(263))
    with pytest.raises(CheckpointError) as err:  # no CLIP file
        CondMDIMotion(checkpoint=str(ckpt), stats_dir=str(tmp_path / "stats"), clip_path=str(tmp_path / "clip.safetensors"))
    assert "\n" not in str(err.value) and "python scripts/fetch_weights.py condmdi-clip" in str(err.value)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache.*condmdi-clip"):
        CondMDIMotion(checkpoint=str(ckpt), stats_dir=str(tmp_path / "stats"), cache_dir=str(tmp_path / "hf"))
    with pytest.raises(DataError, match="Mean_abs_3d.npy, Std_abs_3d.npy not found"):
        CondMDIMotion(checkpoint=str(ckpt), stats_dir=str(tmp_path / "nostats"))


def test_missing_checkpoint_through_the_config(tmp_path):
    cfg = compose(["backbone=condmdi", f"paths.cache={tmp_path}", "device=cpu"])
    assert cfg.backbone.resolution == 196 and cfg.backbone.pad_frames == 224
    assert (cfg.backbone.clip_repo_id, cfg.backbone.clip_revision) == (CHECKPOINTS["condmdi-clip"].repo_id,
                                                                       CHECKPOINTS["condmdi-clip"].revision)
    with pytest.raises(CheckpointError) as err:
        build(cfg.backbone)
    msg = str(err.value)
    assert "\n" not in msg and f"{tmp_path}/condmdi/condmdi_uncond/model000500000.pt not found" in msg
    assert "drive.google.com" in msg and "backbone.checkpoint" in msg


# --- statistics, masks ---------------------------------------------------------------------------------

def _write_stats(folder, mean, std):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "Mean_abs_3d.npy", np.asarray(mean, dtype=np.float32))
    np.save(folder / "Std_abs_3d.npy", np.asarray(std, dtype=np.float32))


def test_encode_decode_with_stats_files(tmp_path):
    mean, std = np.linspace(-1, 1, 263), np.linspace(0.5, 2, 263)
    _write_stats(tmp_path, mean, std)
    bb = CondMDIMotion(random_weights=True, stats_dir=str(tmp_path), resolution=8, pad_frames=8, latent_dim=8,
                       dim_mults=(1, 1), text_encoder=TEXT, clip_precision="fp32")
    x = torch.zeros(1, 263, 1, 8)
    x[0, 7, 0, 3] = 1.0
    z = bb.encode(x)
    assert z[0, 7, 0, 3].item() == pytest.approx((1.0 - mean[7]) / std[7], rel=1e-6)
    assert z[0, 0, 0, 0].item() == pytest.approx(-mean[0] / std[0], rel=1e-6)  # raw zeros are not normalised zeros
    assert torch.allclose(bb.decode(z), x, atol=1e-6)
    assert bb.input_files() == {"content": [tmp_path / "Mean_abs_3d.npy", tmp_path / "Std_abs_3d.npy"]}
    _write_stats(tmp_path / "bad", mean[:262], std[:262])
    with pytest.raises(DataError, match=r"\(262,\)"):
        CondMDIMotion(random_weights=True, stats_dir=str(tmp_path / "bad"), text_encoder=TEXT)


def test_masks_broadcast_over_features(tiny):
    mask = (torch.rand(3, 1, 1, 64) > 0.5).float()
    assert tiny.mask_to_sample(mask) is mask
    with pytest.raises(DataError, match="expected"):
        tiny.mask_to_sample(torch.ones(3, 1, 8, 8))
    assert tiny.sample_shape == tiny.data_shape == (263, 1, 64) and tiny.conditional


# --- the schedule ----------------------------------------------------------------------------------------

def test_cosine_table_is_condmdis():
    T = 1000
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    ab = cosine_alphas_cumprod(T)
    # below the cap the product telescopes: ab_t = f((t+1)/T) / f(0)
    closed = torch.tensor([f((t + 1) / T) / f(0) for t in range(T - 1)], dtype=torch.float64)
    assert torch.allclose(ab[:-1], closed, rtol=1e-12, atol=0)
    assert cosine_betas(T)[-1].item() == 0.999 and cosine_betas(T)[:-1].max().item() < 0.999  # only the last is capped
    assert ab[-1].item() == pytest.approx(closed[-1].item() * 0.001, rel=1e-12)


def test_make_schedule_gives_condmdis_alphas():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if k != "_class_name"})
    assert torch.equal(sched.betas, cosine_betas().float())  # same betas, rounded to float32
    s = make_schedule(SCHEDULER_CONFIG, 1000, kind="ddpm")
    ab = cosine_alphas_cumprod()
    assert torch.equal(s.timesteps, torch.arange(999, -1, -1))
    assert torch.allclose(s.ab, ab.flip(0), rtol=2e-5, atol=0)  # diffusers' cumprod runs in float32
    assert torch.allclose(s.ab_prev[:-1], ab.flip(0)[1:], rtol=2e-5, atol=0) and s.ab_prev[-1].item() == 1.0


# --- eps, conditions, guidance -------------------------------------------------------------------------

def test_eps_and_x0_convert_exactly(tiny64):
    torch.manual_seed(3)
    z, t = torch.randn(3, 263, 1, 64, dtype=torch.float64), torch.tensor([0, 420, 999])
    cond = tiny64.make_cond(["a person walks in a circle", None, "jumps"], 3)
    x0, eps = tiny64.predict_x0(z, t, cond), tiny64.eps(z, t, cond)
    assert eps.dtype == torch.float64 and x0.abs().mean() > 0.01
    ab = tiny64.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(eps_to_x0(eps, z, ab), x0, rtol=1e-9, atol=1e-11)
    assert torch.allclose(eps, (z - ab.sqrt() * x0) / (1 - ab).sqrt(), rtol=1e-13, atol=0)
    assert torch.allclose(x0_to_eps(eps_to_x0(eps, z, ab), z, ab), eps, rtol=1e-12, atol=1e-12)


def test_unconditional_path_is_embed_text_bias(tiny64):
    net = tiny64.net
    t, text = torch.tensor([7, 300]), torch.randn(2, 32, dtype=torch.float64)
    emb = net.embedding(t, text, torch.tensor([True, True]))
    assert torch.equal(emb, net.embed_timestep(t) + net.embed_text.bias)  # not the time embedding alone
    assert net.embed_text.bias.abs().max() > 0
    null = tiny64.null_cond(2)
    assert null["uncond"].tolist() == [True, True] and not null["text"].any()
    cond = tiny64.make_cond([None, "a man kicks"], 2)
    assert cond["uncond"].tolist() == [True, False] and not cond["text"][0].any() and cond["text"][1].abs().sum() > 0
    z = torch.randn(2, 263, 1, 64, dtype=torch.float64)
    # uncond ignores the text; a caption changes the output
    garbage = {"text": text, "uncond": torch.tensor([True, True])}
    assert torch.equal(tiny64.eps(z, t, garbage), tiny64.eps(z, t, null))
    assert not torch.allclose(tiny64.eps(z, t, cond)[1], tiny64.eps(z, t, null)[1])
    assert torch.equal(tiny64.eps(z, t, cond)[0], tiny64.eps(z, t, null)[0])
    assert torch.equal(tiny64.eps(z, t, None), tiny64.eps(z, t, null))


def test_conditions_concatenate_and_index(tiny):
    a, b = tiny.make_cond(["walks", None], 2), tiny.null_cond(1)
    both = cat_cond([a, b])
    assert both["text"].shape == (3, 32) and both["uncond"].tolist() == [False, True, True]
    picked = index_cond(both, torch.tensor([False, True, True]))
    assert picked["uncond"].tolist() == [True, True]
    z, t = torch.randn(3, 263, 1, 64), torch.tensor([10, 10, 10])
    one = torch.cat([tiny.eps(z[:2], t[:2], a), tiny.eps(z[2:], t[2:], b)])
    assert torch.allclose(tiny.eps(z, t, both), one, rtol=1e-4, atol=1e-3)  # batching changes nothing (|eps| ~ 100 at t=10)
    with pytest.raises(DataError, match="2 captions for a batch of 3"):
        tiny.make_cond(["a", "b"], 3)
    with pytest.raises(ConfigError, match="captions"):
        tiny.make_cond([3, None], 2)


def test_guidance_on_eps_equals_guidance_on_x0(tiny64):
    """CondMDI guides x0 (``ClassifierFreeSampleModel``: out_u + s (out_c - out_u)); the runner guides eps."""
    torch.manual_seed(4)
    z, t, g = torch.randn(2, 263, 1, 64, dtype=torch.float64), torch.tensor([50, 800]), 2.5
    c, u = tiny64.make_cond(["a person runs", "waves"], 2), tiny64.null_cond(2)
    guided_eps = tiny64.eps(z, t, u) + g * (tiny64.eps(z, t, c) - tiny64.eps(z, t, u))
    x0_u, x0_c = tiny64.predict_x0(z, t, u), tiny64.predict_x0(z, t, c)
    ab = tiny64.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert (x0_c - x0_u).abs().max() > 1e-3
    assert torch.allclose(guided_eps, x0_to_eps(x0_u + g * (x0_c - x0_u), z, ab), rtol=1e-10, atol=1e-10)


# --- padding ------------------------------------------------------------------------------------------

def test_frames_are_padded_on_the_right_and_cropped():
    net = tiny_network(5, torch.float64, pad_frames=224)
    x, t, text = torch.randn(2, 263, 1, 196, dtype=torch.float64), torch.tensor([3, 600]), torch.randn(2, 32, dtype=torch.float64)
    out = net(x, t, text).double()
    emb = net.embedding(t, text, torch.tensor([False, False]))
    by_hand = net.unet(F.pad(x.reshape(2, 263, 196), (0, 28)), emb)[..., :196].reshape(2, 263, 1, 196)
    assert out.shape == x.shape and torch.allclose(out, by_hand, rtol=0, atol=1e-12)
    # a full-length input goes through unpadded
    x224 = torch.randn(1, 263, 1, 224, dtype=torch.float64)
    assert torch.allclose(net(x224, t[:1], text[:1]).double().reshape(1, 263, 224), net.unet(x224.reshape(1, 263, 224), emb[:1]),
                          atol=1e-12)
    # the pad length matters (GroupNorm statistics include the padding): 232 frames give other outputs
    other = CondMDINetwork(**{**TINY, "pad_frames": 232}).double()
    other.load_state_dict(net.state_dict())
    assert (other(x, t, text) - out).abs().max() > 1e-6
    # and every output frame sees every input frame: changing the last valid frame moves frame 0
    y = x.clone()
    y[..., 195] += 1.0
    assert (net(y, t, text)[..., 0] - out[..., 0]).abs().max() > 1e-9


# --- the miniature, precision --------------------------------------------------------------------------

def test_tiny_config_runs_without_any_file(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # nothing is looked up in a cache
    cfg = compose(["backbone=condmdi-tiny"]).backbone
    assert cfg.resolution == 64 and cfg.random_weights and cfg.checkpoint is None
    again = build(cfg)
    z, t = torch.randn(2, 263, 1, 64), torch.tensor([999, 0])
    cond = again.make_cond(["a person walks forward", None], 2)
    assert torch.equal(again.eps(z, t, cond), tiny.eps(z, t, tiny.make_cond(["a person walks forward", None], 2)))  # seeded
    assert torch.isfinite(again.eps(z, t, cond)).all() and again.input_files() == {}


def test_text_is_cut_to_twenty_tokens_and_padded_to_77(tiny):
    enc = tiny.text_encoder
    long = " ".join(["walk"] * 40)
    ids = enc.tokenize(["a man", long])
    sot, eot = enc.tokenizer.sot_token_id, enc.tokenizer.eot_token_id
    assert ids.shape == (2, 77) and ids[0, 0] == sot and ids[0, 3] == eot and not ids[0, 4:].any()
    assert ids[1, 21] == eot and (ids[1, 1:21] != eot).all() and not ids[1, 22:].any()
    # what follows the end token changes nothing (causal attention, pooled at the end token)
    other = ids[:1].clone()
    other[0, 4:] = 1234
    assert torch.equal(enc(["a man"]), enc.clip.encode_text(other).float())
    assert not torch.equal(enc(["a man"]), enc(["a woman"]))
    assert torch.equal(enc([long]), enc([long + " and then runs away quickly"]))  # cut at 20 tokens


def test_fp16_clip_and_autocast_stay_close(tiny):
    half = CondMDIMotion(random_weights=True, resolution=64, pad_frames=72, latent_dim=16, text_encoder=TEXT,
                         clip_precision="fp16", dtype="float16")
    assert half.text_encoder.clip.text_projection.dtype == torch.float16 and half.autocast_dtype == torch.float16
    full = tiny.make_cond(["a person jumps"], 1)["text"]
    assert torch.allclose(half.make_cond(["a person jumps"], 1)["text"], full, atol=2e-2, rtol=2e-2)
    z, t = torch.randn(1, 263, 1, 64), torch.tensor([500])
    c = tiny.make_cond(["a person jumps"], 1)
    x_half, x_full = half.predict_x0(z, t, c), tiny.predict_x0(z, t, c)
    assert x_half.dtype == torch.float32 and torch.allclose(x_half, x_full, atol=5e-2)
    with pytest.raises(ConfigError, match="clip_precision"):
        CondMDIMotion(random_weights=True, text_encoder=TEXT, clip_precision="int8")


def test_fetch_hint_names_the_download():
    assert condmdi.CHECKPOINT_URL in condmdi.FETCH_HINT and "model000500000.pt" in condmdi.FETCH_HINT
