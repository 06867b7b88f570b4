"""The on-disk DDIM-inversion cache (alm/inversion_cache.py): same outputs, no repeated inversion in a
sweep, per-sample entries independent of the batch, keys that change with every input, and corrupt or
unwritable caches that cost a recomputation, never a run."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from alm.config import compose
from alm.run_names import run_dir_for
from alm.inversion_cache import InversionCache, InversionCacheWarning, backbone_identity
from alm.config import build_method
from alm.fingerprint import fingerprint
from alm.runner import run
from alm.sampling import CallCounter, invert
from alm.schedule import make_schedule
from alm.tasks.inpaint import inpainting_problem, masked_source
from conftest import LINEAR_SCHEDULER, ToyBackbone

STEPS = 10
FAST = ["backbone=gmm", "dataset=gmm", "mask=center", f"sampler.steps={STEPS}", "num_samples=4", "batch_size=4", "progress=false"]
ON, OFF = "++task.inversion_cache=true", "++task.inversion_cache=false"  # ++: with or without the key in conf/task
CACHED = [*FAST, ON]  # the gmm backbone leaves the cache off by default (task.inversion_cache=auto): switch it on


def outputs(run_dir: Path) -> dict[int, torch.Tensor]:
    return {int(p.stem): torch.load(p, weights_only=False)["output"] for p in sorted((run_dir / "samples").glob("*.pt"))}


def rows(run_dir: Path) -> list[dict]:
    return [torch.load(p, weights_only=False)["cost"] for p in sorted((run_dir / "samples").glob("*.pt"))]


def cache_files(cache_dir) -> list[Path]:
    return sorted(Path(cache_dir).rglob("*.pt"))


# --- through the runner (gmm backbone, ALM) ------------------------------------------------------

def test_same_outputs_with_and_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache"))
    run(compose(["method=alm", *FAST, OFF]), tmp_path / "off")
    assert cache_files(tmp_path / "cache") == []
    run(compose(["method=alm", *FAST, ON]), tmp_path / "cold")
    assert len(cache_files(tmp_path / "cache")) == 4  # one file per sample
    run(compose(["method=alm", *FAST, ON]), tmp_path / "warm")
    off, cold, warm = outputs(tmp_path / "off"), outputs(tmp_path / "cold"), outputs(tmp_path / "warm")
    for i in off:
        assert torch.equal(off[i], cold[i]) and torch.equal(off[i], warm[i])  # bitwise
    # evaluations = the method's cost (3 x 10 steps + 10 inversion), whatever the cache held
    for name, cached in (("off", 0), ("cold", 0), ("warm", STEPS)):
        for r in rows(tmp_path / name):
            assert r["evaluations"] == 3 * STEPS + STEPS and r["cached_evaluations"] == cached, name


def test_sweep_over_weights_makes_no_inversion_calls(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache"))
    run(compose(["method=alm", "method.w2=0.005", *CACHED]), tmp_path / "a")
    for point in (["method=alm", "method.w2=0.05", "method.w1=0.5"], ["method=alm_fused"], ["method=syncsde", "method.lam=0.5"]):
        summary = run(compose([*point, *CACHED]), tmp_path / "_".join(point))
        assert summary["cached_evaluations"] == STEPS  # every inversion evaluation was read from disk
    assert len(cache_files(tmp_path / "cache")) == 4
    # the same, counted at the network: a second inpainting_problem makes zero calls
    backbone, items, images, masks, labels, schedule, task = _gmm_batch(4)
    cache = InversionCache(tmp_path / "cache")
    counter = CallCounter()
    p = inpainting_problem(backbone, build_method("alm", w2=0.5), images, masks, labels, schedule, counter=counter, cache=cache)
    assert counter.calls == 0 and counter.evaluations == 0 and counter.cached_evaluations == 4 * STEPS
    ref = inpainting_problem(backbone, build_method("alm"), images, masks, labels, schedule)
    assert torch.equal(p.observation.trajectory, ref.observation.trajectory)


def test_entries_do_not_depend_on_the_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache"))
    ref = outputs(_run(tmp_path / "b1-off", ["method=alm", *FAST, "batch_size=1", OFF]))
    _run(tmp_path / "b4", ["method=alm", *CACHED, "batch_size=4"])  # fills the cache from batches of 4
    for bs in (1, 3):
        d = _run(tmp_path / f"b{bs}", ["method=alm", *CACHED, f"batch_size={bs}"])
        assert all(r["cached_evaluations"] == STEPS for r in rows(d))  # every sample found, whatever its batch
        got = outputs(d)
        assert all((got[i] - ref[i]).abs().max() <= 1e-6 for i in ref)
    # a partly cached batch: samples 0, 1 stored by a 2-sample run, 2 and 3 computed beside them
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache2"))
    _run(tmp_path / "two", ["method=alm", *CACHED, "num_samples=2", "batch_size=2"])
    d = _run(tmp_path / "mixed", ["method=alm", *CACHED])
    cached = [r["cached_evaluations"] for r in rows(d)]
    assert cached == [STEPS / 2] * 4  # batch average: 2 of 4 samples read (the sum is exact)
    got = outputs(d)
    assert all((got[i] - ref[i]).abs().max() <= 1e-6 for i in ref)
    assert len(cache_files(tmp_path / "cache2")) == 4


def _run(run_dir: Path, overrides: list[str]) -> Path:
    run(compose(overrides), run_dir)
    return run_dir


def test_switch_changes_neither_fingerprint_nor_folder(tmp_path):
    on = ["method=alm", *FAST, ON]
    off = ["method=alm", *FAST, OFF]
    assert fingerprint(compose(on)) == fingerprint(compose(off))
    assert run_dir_for(compose(on), on) == run_dir_for(compose(off), off)
    overrides = ["method=alm", f"paths.inversion_cache={tmp_path}"]
    assert run_dir_for(compose(overrides), overrides) == run_dir_for(compose(["method=alm"]), ["method=alm"])
    # a folder written with the key in its fingerprint (older runners) resumes with either setting
    run(compose([*on, "num_samples=1"]), tmp_path / "r")
    fp = json.loads((tmp_path / "r" / "fingerprint.json").read_text())
    fp["task"]["inversion_cache"] = True
    (tmp_path / "r" / "fingerprint.json").write_text(json.dumps(fp))
    assert run(compose([*off, "num_samples=2"]), tmp_path / "r")["samples"] == 2


# --- the cache itself (toy and gmm backbones) ----------------------------------------------------

def _gmm_batch(n: int):
    cfg = compose(["method=alm", *FAST])
    from alm.parts import build_parts

    comp = build_parts(cfg)
    items = [comp.dataset[i] for i in range(n)]
    images = torch.stack([it.image for it in items])
    masks = torch.stack([comp.masks.get(i, tuple(images.shape[-2:])) for i in range(n)])
    schedule = make_schedule(comp.backbone.scheduler_config, STEPS)
    return comp.backbone, items, images, masks, [it.label for it in items], schedule, cfg.task


def _toy_batch(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, 1, 4, 4, generator=g) * 2 - 1
    masks = (torch.rand(b, 1, 4, 4, generator=g) > 0.5).float()
    return images, masks, [0.5, -1.0, 2.0][:b]


def _toy_keys(cache, net, schedule, images, masks, labels, hole=-1.0):
    src = masked_source(images, masks, hole)
    return cache.keys(net, schedule, src, masks, labels, net.encode(src))


def test_keys_change_with_every_input_and_nothing_else(tmp_path):
    cache = InversionCache(tmp_path)
    net, sched = ToyBackbone(), make_schedule(LINEAR_SCHEDULER, STEPS)
    images, masks, labels = _toy_batch()
    base = _toy_keys(cache, net, sched, images, masks, labels)
    assert len(set(base)) == 3
    # per sample: the same key alone, in another order, in another batch
    assert _toy_keys(cache, net, sched, images[1:2], masks[1:2], labels[1:2]) == base[1:2]
    perm = [2, 0, 1]
    assert _toy_keys(cache, net, sched, images[perm], masks[perm], [labels[i] for i in perm]) == [base[i] for i in perm]
    assert _toy_keys(InversionCache(tmp_path / "other"), net, sched, images, masks, labels) == base  # not the folder
    # every input the trajectory depends on gives other keys
    other_mask = masks.clone()
    other_mask[:, :, 0, 0] = 1 - other_mask[:, :, 0, 0]
    changed = {
        "prompt/label": _toy_keys(cache, net, sched, images, masks, [7.0, 8.0, 9.0]),
        "label type": _toy_keys(cache, net, sched, images, masks, ["0.5", "-1.0", "2.0"]),
        "steps": _toy_keys(cache, net, make_schedule(LINEAR_SCHEDULER, STEPS + 1), images, masks, labels),
        "beta table": _toy_keys(cache, net, make_schedule({**LINEAR_SCHEDULER, "beta_end": 0.03}, STEPS), images, masks, labels),
        "timestep offset": _toy_keys(cache, net, make_schedule({**LINEAR_SCHEDULER, "steps_offset": 1}, STEPS), images, masks, labels),
        "mask": _toy_keys(cache, net, sched, images, other_mask, labels),
        "source": _toy_keys(cache, net, sched, images + 1e-3, masks, labels),
        "hole value": _toy_keys(cache, net, sched, images, masks, labels, hole=0.0),
        "backbone": _toy_keys(cache, ToyBackbone(a=0.31), sched, images, masks, labels),
        "dtype": cache.keys(net, sched, masked_source(images, masks, -1.0), masks, labels, masked_source(images, masks, -1.0).double()),
    }
    for what, keys in changed.items():
        assert all(k != b for k, b in zip(keys, base)), what
    # an unconditional backbone ignores the labels (its trajectory does not depend on them)
    net.conditional = False
    assert _toy_keys(cache, net, sched, images, masks, labels) == _toy_keys(cache, net, sched, images, masks, [7.0, 8.0, 9.0])


def test_backbone_identity_sees_weights_and_settings():
    a, b = ToyBackbone(), ToyBackbone()
    assert backbone_identity(a) == backbone_identity(b)
    b.d = 0.25
    assert backbone_identity(a) != backbone_identity(b)
    backbone, *_ = _gmm_batch(1)
    before = backbone_identity(backbone)
    backbone.means.add_(1e-6)  # a buffer
    assert backbone_identity(backbone) != before


def test_partly_cached_batch_with_conditions_equals_plain_inversion(tmp_path):
    cache = InversionCache(tmp_path)
    net, sched = ToyBackbone(), make_schedule(LINEAR_SCHEDULER, STEPS)
    images, masks, labels = _toy_batch()
    x0 = masked_source(images, masks, -1.0)
    cond = net.make_cond(labels, 3)
    ref = invert(net, x0, sched, cond)
    keys = _toy_keys(cache, net, sched, images, masks, labels)
    cache.invert(net, x0[1:2], sched, cond[1:2], keys[1:2])  # store sample 1 only
    counter = CallCounter()
    got = cache.invert(net, x0, sched, cond, keys, counter)
    assert (got - ref).abs().max() <= 1e-6
    assert counter.evaluations == 2 * STEPS and counter.cached_evaluations == STEPS  # samples 0, 2 inverted
    counter = CallCounter()
    assert torch.equal(cache.invert(net, x0, sched, cond, keys, counter), got) and counter.calls == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other key", "wrong shape", "nan"])
def test_corrupt_file_is_recomputed_with_a_warning(tmp_path, damage):
    cache = InversionCache(tmp_path)
    net, sched = ToyBackbone(), make_schedule(LINEAR_SCHEDULER, STEPS)
    images, masks, labels = _toy_batch()
    x0 = masked_source(images, masks, -1.0)
    cond = net.make_cond(labels, 3)
    keys = _toy_keys(cache, net, sched, images, masks, labels)
    ref = cache.invert(net, x0, sched, cond, keys)
    path = cache.path(keys[1])
    entry = torch.load(path, weights_only=True)
    if damage == "garbage":
        path.write_bytes(b"\x00not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other key":
        torch.save({**entry, "key": keys[0]}, path)
    elif damage == "wrong shape":
        torch.save({**entry, "trajectory": entry["trajectory"][:-1]}, path)
    elif damage == "nan":
        torch.save({**entry, "trajectory": entry["trajectory"] * float("nan")}, path)
    counter = CallCounter()
    with pytest.warns(InversionCacheWarning, match="unusable.*recomputing"):
        got = cache.invert(net, x0, sched, cond, keys, counter)
    assert (got - ref).abs().max() <= 1e-6
    assert counter.evaluations == STEPS and counter.cached_evaluations == 2 * STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: read back without a warning
        assert torch.equal(cache.invert(net, x0, sched, cond, keys), got)


def test_corrupt_file_in_a_run_and_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache"))
    ref = outputs(_run(tmp_path / "a", ["method=alm", *CACHED]))
    for f in cache_files(tmp_path / "cache")[:2]:
        f.write_bytes(b"junk")
    with pytest.warns(InversionCacheWarning):
        got = outputs(_run(tmp_path / "b", ["method=alm", *CACHED]))
    assert all(torch.equal(got[i], ref[i]) for i in ref)
    # a cache path that cannot be a folder: one warning, the run goes on without storing
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(InversionCacheWarning, match="cannot be written"):
        got = outputs(_run(tmp_path / "c", ["method=alm", *CACHED]))
    assert all(torch.equal(got[i], ref[i]) for i in ref)


def test_embedded_backbone_uses_the_cache(tmp_path, monkeypatch):
    """The project's diffusers backbone (class-conditional, 32 px MNIST): a second method reads every trajectory."""
    monkeypatch.setenv("ALM_INVERSION_CACHE_DIR", str(tmp_path / "cache"))
    base = ["backbone=embedded", "dataset=mnist", "mask=center", "sampler.steps=3", "sampler.guidance=2", "num_samples=2", "batch_size=2", "progress=false"]
    a = run(compose(["method=alm", *base, OFF]), tmp_path / "off")
    run(compose(["method=alm", *base]), tmp_path / "cold")
    b = run(compose(["method=alm", "method.w2=0.05", *base]), tmp_path / "warm")
    assert a["cached_evaluations"] == 0 and b["cached_evaluations"] == 3
    assert a["evaluations"] == b["evaluations"] == 4 * 3 + 3  # ALM with CFG: 4 per step, + the inversion
    off, cold = outputs(tmp_path / "off"), outputs(tmp_path / "cold")
    assert all(torch.equal(off[i], cold[i]) for i in off)


def test_latent_backbone_tiny_sd15(tmp_path):
    """Stable Diffusion's path (VAE latents, prompts through the text encoder): keys stable across loads,
    a warm cache makes no network call and gives the same trajectory bit for bit."""
    from alm.backbones.tiny import tiny_backbone

    first, second = tiny_backbone("sd15"), tiny_backbone("sd15")
    assert backbone_identity(first) == backbone_identity(second)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, *first.data_shape, generator=g) * 2 - 1
    masks = torch.zeros(2, 1, *first.data_shape[-2:])
    masks[:, :, 16:48, 16:48] = 1
    prompts = ["a photo of a cat", "a painting of a dog"]
    schedule = make_schedule(first.scheduler_config, 3)
    task = compose(["method=alm"]).task
    cache, method = InversionCache(tmp_path), build_method("alm")
    with torch.no_grad():
        ref = inpainting_problem(first, method, images, masks, prompts, schedule)
        cold = inpainting_problem(first, method, images, masks, prompts, schedule, cache=cache)
        counter = CallCounter()
        warm = inpainting_problem(second, method, images, masks, prompts, schedule, counter=counter, cache=cache)
        other = inpainting_problem(second, method, images, masks, ["a photo of a dog", prompts[1]], schedule, cache=cache)
    assert torch.equal(ref.observation.trajectory, cold.observation.trajectory) and torch.equal(ref.observation.trajectory, warm.observation.trajectory)
    assert counter.evaluations == 0 and counter.cached_evaluations == 2 * 3
    assert len(cache_files(tmp_path)) == 3  # the new prompt made one more entry
    assert torch.equal(other.observation.trajectory[:, 1], ref.observation.trajectory[:, 1]) and not torch.equal(other.observation.trajectory[:, 0], ref.observation.trajectory[:, 0])


def test_auto_switch_skips_the_cache_on_an_analytic_backbone(tmp_path):
    """On backbone=gmm reading an inversion from disk is slower than recomputing it: auto leaves the cache off."""
    args = ["method=alm", *FAST, f"paths.inversion_cache={tmp_path / 'cache'}", "num_samples=1"]
    assert compose(args).task.inversion_cache == "auto"
    run(compose(args), tmp_path / "auto")
    assert not cache_files(tmp_path / "cache")
    run(compose([*args, ON]), tmp_path / "on")
    assert cache_files(tmp_path / "cache")
