"""``batch_size`` changes no output beyond the rounding of the arithmetic (docs/distributed.md, "Batch size").

Every sample draws its noise from its own generators seeded by ``(seed, index)`` (``alm.rng``), so the
batch a sample lands in changes only the ORDER of floating-point operations inside the network's
kernels (matrix products and convolutions pick other blockings for other batch sizes). What that costs:

- float64: a few ulp. The outputs of batch sizes 1, 4 and 7 differ by ~1e-15 of their magnitude
  (measured <= 1.8e-15 relative on the tiny UNet below, 3.1e-14 on the embedded model); asserted
  <= 1e-12 relative. Not bit-exact: BLAS rounds differently when the number of rows changes.
- float32, as a user runs it (``python run.py``, embedded backbone): output tensors within 1e-4
  (measured 2.3e-5) and the PNGs byte-identical (one 8-bit level is 1/127.5 = 7.8e-3).

The runner-level tests on the Gaussian mixture (``tests/test_runner.py``) check the same at 1e-5.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alm.config import build_method, compose
from alm.rng import SampleGenerators
from alm.sampling import reverse
from alm.schedule import make_schedule
from alm.tasks.inpaint import inpainting_problem

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 4, 7)
N = 7  # samples: batch sizes 1, 4, 7 split them as 7x1, 4+3, 1x7
F64_RELATIVE = 1e-12  # float64: max |difference| / max(1, max |output|)
F32_ABSOLUTE = 1e-4   # float32, the embedded backbone through run.py


def chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[k : k + size] for k in range(0, len(indices), size)]


def worst_difference(runs: dict[int, dict[int, torch.Tensor]]) -> tuple[float, float]:
    """(max |output(batch b) - output(batch 1)| over every sample and b, max |output|)."""
    ref = runs[BATCH_SIZES[0]]
    diff = max((ref[i] - out[i]).abs().max().item() for out in runs.values() for i in ref)
    return diff, max(t.abs().max().item() for t in ref.values())


# --- float64: a pixel UNet, every kind of method ------------------------------------------------------

SIZE = 16


@pytest.fixture(scope="module")
def unet64():
    """A tiny class-conditional pixel UNet (1 channel, 16 px, attention, 10 classes + the null class) in float64."""
    from diffusers import DDIMScheduler, UNet2DModel

    from alm.backbones.diffusers_unet import DiffusersUNet

    torch.manual_seed(0)
    model = UNet2DModel(
        sample_size=SIZE, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, num_class_embeds=11,
    ).eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False).config
    return DiffusersUNet.from_model(model.double(), scheduler, dtype=torch.float64)


def _problems():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(N, 1, SIZE, SIZE, generator=g, dtype=torch.float64) * 2 - 1
    masks = torch.zeros(N, 1, SIZE, SIZE, dtype=torch.float64)
    for i in range(N):  # a different box per sample
        masks[i, :, 2 + i % 5 : 10 + i % 5, 3 + i % 3 : 12] = 1
    return images, masks, [i % 10 for i in range(N)]


@pytest.mark.parametrize("method, sampler, guidance", [
    ("alm", "ddim", 2.0),                        # DDIM inversion for X_t, CFG: cond + null rows in one call
    ("alm_fused", "ddpm", 2.0),                  # per-sample DDPM noise at every step
    ("syncsde", "ddim", 2.0),
    ("recon_guidance_imputation", "ddim", 2.0),  # gradients through the network
    ("bld", "ddim", 1.0),
])
def test_float64_pixel_unet_outputs_do_not_depend_on_batch_size(unet64, method, sampler, guidance):
    images, masks, labels = _problems()
    m = build_method(method)
    schedule = make_schedule(unet64.scheduler_config, 6, sampler)
    runs = {}
    for size in BATCH_SIZES:
        out = {}
        for ids in chunks(list(range(N)), size):
            problem = inpainting_problem(unet64, m, images[ids], masks[ids], [labels[i] for i in ids], schedule)
            z = reverse(unet64, m, problem, schedule, SampleGenerators(0, ids), guidance=guidance, sampler=sampler)
            out.update({i: z[j].clone() for j, i in enumerate(ids)})
        runs[size] = out
    assert runs[1][0].dtype == torch.float64
    diff, scale = worst_difference(runs)
    print(f"\ntiny UNet {method}, float64, batch sizes {BATCH_SIZES}: max |output difference| = {diff:.3g} (max |output| {scale:.3g})")
    assert diff <= F64_RELATIVE * max(1.0, scale), (diff, scale)


@pytest.mark.slow  # ~40 s: the embedded UNet in float64 on the CPU
def test_float64_embedded_outputs_do_not_depend_on_batch_size():
    """The project's own MNIST model (weights/embedded) in float64 through the run's own parts: the
    float32 differences of the test below are rounding (measured here: 3e-14)."""
    from alm.parts import build_parts

    cfg = compose(["backbone.dtype=float64", f"num_samples={N}", "sampler.steps=10", "progress=false", "metrics=none",
                   "++task.inversion_cache=false"])  # each batch size inverts its own sources
    parts = build_parts(cfg)
    runs = {}
    for size in BATCH_SIZES:
        out = {}
        for ids in chunks(list(range(N)), size):
            batch = parts.task.load(parts.dataset, parts.masks, ids, parts.device)
            batch = replace(batch, sources=batch.sources.double(), masks=batch.masks.double())
            with torch.no_grad():
                problem = parts.task.problem(parts.backbone, parts.method, batch, parts.schedule)
                z = reverse(parts.backbone, parts.method, problem, parts.schedule, SampleGenerators(int(cfg.seed), ids),
                            guidance=float(cfg.sampler.guidance), sampler=str(cfg.sampler.name))
            out.update({i: z[j].clone() for j, i in enumerate(ids)})
        runs[size] = out
    assert runs[1][0].dtype == torch.float64
    diff, scale = worst_difference(runs)
    print(f"\nembedded, float64, batch sizes {BATCH_SIZES}: max |output difference| = {diff:.3g} (max |output| {scale:.3g})")
    assert diff <= F64_RELATIVE * max(1.0, scale), (diff, scale)


# --- float32, as a user runs it -------------------------------------------------------------------

def _run_cli(tmp_path: Path, size: int) -> Path:
    """``python run.py num_samples=7 sampler.steps=10 threads=1 batch_size=<size>`` (the defaults otherwise:
    backbone=embedded dataset=mnist method=alm, 32 px) with its own runs folder and an empty inversion
    cache of its own (else the later runs would reuse the first one's inversions); returns the run folder."""
    base = tmp_path / f"b{size}"
    env = {**os.environ, "ALM_INVERSION_CACHE_DIR": str(base / "inversion-cache")}
    cmd = [sys.executable, str(ROOT / "run.py"), f"num_samples={N}", "sampler.steps=10", "threads=1",
           f"batch_size={size}", "progress=false", f"paths.runs={base / 'runs'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p.parent for p in (base / "runs").rglob("samples")]
    assert len(folders) == 1, folders
    return folders[0]


@pytest.mark.slow  # three runs of run.py, ~20 s each
def test_embedded_float32_batch_sizes_as_users_see_them(tmp_path):
    folders = {size: _run_cli(tmp_path, size) for size in BATCH_SIZES}
    names = {size: f.relative_to(tmp_path / f"b{size}" / "runs") for size, f in folders.items()}
    assert len(set(names.values())) == 1, names  # batch_size is not part of the run folder's name
    samples = {size: {int(p.stem): torch.load(p, weights_only=False) for p in sorted((f / "samples").glob("*.pt"))}
               for size, f in folders.items()}
    ref = samples[1]
    assert sorted(ref) == list(range(N))
    for size in BATCH_SIZES[1:]:
        assert sorted(samples[size]) == list(range(N))
        for i, rec in ref.items():
            for key, value in rec.items():
                if not isinstance(value, torch.Tensor):
                    continue
                other = samples[size][i][key]
                assert value.dtype == other.dtype == torch.float32 and value.shape == other.shape, (key, i)
                if key == "output":
                    assert (value - other).abs().max().item() <= F32_ABSOLUTE, (size, i)
                else:  # the source, its mask and the masked input are data, not computed: equal
                    assert torch.equal(value, other), (size, i, key)
    diff, _ = worst_difference({size: {i: r["output"] for i, r in s.items()} for size, s in samples.items()})
    print(f"\nembedded float32, batch sizes {BATCH_SIZES}: max |output difference| = {diff:.3g}")
    # every picture the user looks at: the per-sample PNGs and the grid, byte for byte
    pngs = sorted(p.relative_to(folders[1]) for p in folders[1].rglob("*.png"))
    assert len(pngs) == 3 * N + 1, pngs  # source, masked, output per sample + grid.png
    for size in BATCH_SIZES[1:]:
        assert sorted(p.relative_to(folders[size]) for p in folders[size].rglob("*.png")) == pngs
        differ = [str(p) for p in pngs if (folders[1] / p).read_bytes() != (folders[size] / p).read_bytes()]
        assert not differ, (size, differ)
