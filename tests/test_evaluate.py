"""The evaluation stage on real run folders (Gaussian-mixture backbone, 1x8x8 images)."""

from __future__ import annotations

import math

import pytest
import torch
from _eval_runs import copy_run, gmm_runs

from alm.evaluate import STORE_ROWS, compose_evaluate, evaluate_experiment, main, plan_evaluation
from alm.metrics import Metric, MissingWeightsError, prepare_metrics
from alm.tables import read_csv


@pytest.fixture
def runs(tmp_path_factory, tmp_path):
    """Fresh copies of the session's run folders (evaluation writes into them)."""
    return {k: copy_run(v, tmp_path / "runs") for k, v in gmm_runs(tmp_path_factory).items()}


def test_evaluate_writes_rows_and_a_ranked_table_with_its_command(runs, tmp_path, capsys):
    out = tmp_path / "table"
    args = [str(runs["alm"]), str(runs["ddim"]), "--out", str(out), "metrics=pixel", "progress=false"]
    assert main(args) == 0, capsys.readouterr().err
    md = (out / "table.md").read_text()
    assert "Made by `python -m alm.evaluate " in md and "metrics=pixel" in md
    columns, table = read_csv(out / "table.csv")
    assert [r["label"] for r in table] == ["alm", "ddim"] and columns[-1] == "rank"
    assert {"mse", "mse_hole", "ssim", "fid_pixels", "kid_pixels", "kid_pixels_std"} <= set(columns)
    _, rows = read_csv(out / "rows.csv")
    assert len(rows) == 8 and {r["label"] for r in rows} == {"alm", "ddim"}
    # the per-sample rows are the definitions applied to the stored tensors ([0, 1] scale, output clamped)
    for r in rows:
        if r["label"] != "alm":
            continue
        d = torch.load(runs["alm"] / "samples" / f"{int(r['sample']):05d}.pt", weights_only=False)
        err = ((d["output"].clamp(-1, 1) + 1) / 2 - (d["source"] + 1) / 2) ** 2
        hole = d["mask"].expand_as(err)
        assert float(r["mse"]) == pytest.approx(float(err.mean()), rel=1e-5, abs=1e-7)
        assert float(r["mse_hole"]) == pytest.approx(float((err * hole).sum() / hole.sum()), rel=1e-5, abs=1e-7)
    # aggregation is a separate step: the table's mean is the mean of the rows
    alm_mse = [float(r["mse"]) for r in rows if r["label"] == "alm"]
    assert float(table[0]["mse"]) == pytest.approx(sum(alm_mse) / 4)
    assert (runs["alm"] / "eval" / STORE_ROWS).is_file() and (runs["alm"] / "eval" / "values.json").is_file()


def test_cached_metrics_are_reused_and_a_changed_metric_is_recomputed(runs, tmp_path, monkeypatch, capsys):
    args = [str(runs["alm"]), "--out", str(tmp_path / "t"), "progress=false", "--only", "mse,ssim"]
    assert main(args) == 0
    first = {r["label"]: r for r in read_csv(tmp_path / "t" / "table.csv")[1]}["alm"]

    def boom(*a, **k):
        raise AssertionError("recomputed a cached metric")

    monkeypatch.setattr("alm.metrics.pixel.SSIM.values", boom)
    assert main([*args, "+metrics.mse.scale=100"]) == 0, capsys.readouterr().err
    second = read_csv(tmp_path / "t" / "table.csv")[1][0]
    assert float(second["mse"]) == pytest.approx(100 * float(first["mse"]))
    assert second["ssim"] == first["ssim"]
    monkeypatch.undo()
    assert main([*args, "force=true"]) == 0
    (runs["alm"] / "eval" / STORE_ROWS).unlink()  # per-sample values lost: recomputed, not reported as NaN
    assert main([*args, "+metrics.mse.scale=100"]) == 0
    assert read_csv(tmp_path / "t" / "table.csv")[1][0]["ssim"] == first["ssim"]


def test_missing_weights_fail_at_the_start_with_one_line(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def store():  # the run's eval/ folder (the runner's own evaluation, metrics=basic, may have made one)
        folder = runs["alm"] / "eval"
        return {f.name: f.read_bytes() for f in folder.iterdir()} if folder.is_dir() else {}

    before = store()
    assert main([str(runs["alm"]), "metrics=inpaint", "progress=false"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: metrics.lpips: LPIPS (alex) needs") and "alexnet-owt-7be5be79.pth" in err
    assert err.count("\n") == 1
    assert store() == before  # nothing was computed
    # skip_unavailable: a warning per missing metric and the others computed
    assert main([str(runs["alm"]), "metrics=inpaint", "metrics.skip_unavailable=true", "progress=false"]) == 0
    captured = capsys.readouterr()
    assert "warning: metrics.lpips left out" in captured.err and "warning: metrics.cs left out" in captured.err
    assert "| alm | 4 |" in captured.out


def test_bad_input_is_a_one_line_error(runs, tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.startswith("error: no such run folder")
    assert main([str(runs["alm"]), "metrics=nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert main([str(runs["alm"]), "--labels", "a,b"]) == 1
    assert "labels" in capsys.readouterr().err


def test_a_folder_of_runs_and_default_labels(runs, tmp_path, capsys):
    assert main([str(tmp_path / "runs"), "--only", "mse", "progress=false", "--out", str(tmp_path / "t")]) == 0
    labels = [r["label"] for r in read_csv(tmp_path / "t" / "table.csv")[1]]
    assert sorted(labels) == ["alm", "alm_w2", "ddim"]  # two runs share the method name: their folder names


def test_experiment_evaluation_plan_and_figures(runs, tmp_path):
    plan = plan_evaluation({"metrics": "pixel", "only": ["mse", "ssim_hole"], "config": ["progress=false"],
                            "title": "GMM", "figures": {"grid": {"rows": 2}}})
    md = evaluate_experiment(plan, [("ALM", runs["alm"]), ("DDIM", runs["ddim"])], tmp_path / "exp", "make table-gmm")
    assert md.startswith("# GMM") and "Made by `make table-gmm`" in md
    assert {p.name for p in (tmp_path / "exp").iterdir()} >= {"evaluation_table.md", "evaluation_table.csv",
                                                               "evaluation_rows.csv", "comparison.png"}
    with pytest.raises(MissingWeightsError):
        plan_evaluation({"metrics": "inpaint", "config": ["metrics.cs.pretrained=/nonexistent/clip.bin"]})


def test_metric_configs_compose():
    for name in ("pixel", "inpaint", "none", "basic", "gmm"):
        cfg = compose_evaluate([f"metrics={name}"])
        assert cfg.metrics.name == name
    wide = compose_evaluate(["metrics=wide"])
    assert wide.metrics.kid.scale == 1000 and wide.metrics.aesthetic.head_path.endswith("sa_0_4_vit_l_14_linear.pth")
    mset = prepare_metrics(compose_evaluate(["metrics=pixel"]).metrics)
    assert mset.directions() == {"mse": False, "mse_hole": False, "ssim": True, "ssim_hole": True,
                                 "fid_pixels": False, "kid_pixels": False}
    assert math.isnan(mset.metrics["mse"].compute())


class _RunAware(Metric):
    """Records the run it is bound to; per-sample values = the sample index, summary = their count."""

    title = "run-aware"
    higher_is_better = None
    aggregate = "compute"

    def __init__(self) -> None:
        super().__init__()
        self.bound: list = []

    def bind_run(self, run_cfg, indices=None) -> None:
        self.bound.append((run_cfg.method.name, indices))
        self.seen: list[int] = []

    def values(self, output, source, mask, labels, metas):
        start = len(self.seen)
        self.seen += self.bound[-1][1][start : start + output.shape[0]]
        return torch.tensor(self.seen[start:], dtype=torch.float64)

    def compute(self) -> float:
        return float(len(self.seen))


class _IndexOnly(_RunAware):
    aggregate = None


def test_metrics_get_the_runs_config_and_indices_and_choose_their_summary(runs, tmp_path):
    """``Metric.bind_run``: the run's config.yaml and the evaluated sample indices, before the updates;
    ``aggregate``: "compute" reports compute(), None no summary value; no direction: no arrow, not ranked."""
    from alm.evaluate import evaluate_run, write_tables
    from alm.metrics import MetricSet

    mse = prepare_metrics({"mse": {"_target_": "alm.metrics.pixel.MSE"}}).metrics["mse"]
    metrics = {"seen": _RunAware(), "index": _IndexOnly(), "mse": mse}
    mset = MetricSet("t", metrics, {k: {"_target_": k} for k in metrics}, {"seen": False, "index": False, "mse": True},
                     batch_size=3)
    res = evaluate_run(runs["alm"], mset, torch.device("cpu"), progress=False, num_samples=3)
    assert metrics["seen"].bound == [("alm", [0, 1, 2])] and metrics["index"].bound == [("alm", [0, 1, 2])]
    assert [r["seen"] for r in res.rows] == [0.0, 1.0, 2.0] == [r["index"] for r in res.rows]
    assert res.summary["seen"] == 3.0 and "index" not in res.summary
    assert evaluate_run(runs["alm"], mset, torch.device("cpu"), progress=False, num_samples=3).summary == res.summary
    assert len(metrics["seen"].bound) == 1  # cached: not bound (nor computed) again
    md = write_tables([res], mset, tmp_path / "t", "cmd")
    assert "- `seen`: run-aware (no better direction, not ranked)" in md and "| seen |" in md and "seen ↑" not in md


# -- runs that survive what users do: incomplete runs, different sample sets, damaged files ----------------
def _cells(path, column):
    return {r["label"]: r[column] for r in read_csv(path)[1]}


def test_a_partial_copy_of_a_run_is_refused_flagged_or_compared_on_common_samples(runs, tmp_path, capsys):
    """A run lacking samples its config asks for is not ranked silently (it was: FID on what it had)."""
    partial = copy_run(runs["alm"], tmp_path / "runs", "alm_partial")
    for i in (2, 3):
        (partial / "samples" / f"0000{i}.pt").unlink()
    base = [str(runs["alm"]), str(partial), "--only", "mse,fid_pixels", "progress=false"]
    assert main([*base, "--out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: incomplete run: alm_partial has 2/4 samples; finish it: python run.py ... ")
    assert f"hydra.run.dir={partial}" in err and "--allow-incomplete" in err and err.count("\n") == 1
    assert not (tmp_path / "refused").exists()
    # --allow-incomplete: evaluated on what it has, flagged, unranked
    assert main([*base, "--allow-incomplete", "--out", str(tmp_path / "flagged")]) == 0
    table = tmp_path / "flagged" / "table.csv"
    assert _cells(table, "samples") == {"alm": "4", "alm_partial": "2/4 (incomplete)"}
    assert _cells(table, "rank") == {"alm": "1", "alm_partial": ""}
    assert "| alm_partial | 2/4 (incomplete) |" in (tmp_path / "flagged" / "table.md").read_text()
    assert "(--allow-incomplete)" in (tmp_path / "flagged" / "table.md").read_text()
    # --common: both runs on the samples both have, ranked, and the table says so
    assert main([*base, "--common", "--out", str(tmp_path / "common")]) == 0
    assert _cells(tmp_path / "common" / "table.csv", "samples") == {"alm": "2/4 (common)", "alm_partial": "2/4 (common)"}
    assert set(_cells(tmp_path / "common" / "table.csv", "rank").values()) == {"1"}  # the same samples: a tie
    assert "the same 2 samples" in (tmp_path / "common" / "table.md").read_text()
    assert len(read_csv(tmp_path / "common" / "rows.csv")[1]) == 4


def test_runs_of_different_sizes_are_compared_on_common_samples_only(runs, tmp_path, capsys):
    from omegaconf import OmegaConf

    from alm.errors import DataError
    from alm.evaluate import evaluate_run

    small = copy_run(runs["ddim"], tmp_path / "runs", "ddim_small")  # a complete run of 2 samples
    for i in (2, 3):
        (small / "samples" / f"0000{i}.pt").unlink()
    cfg = OmegaConf.load(small / "config.yaml")
    cfg.num_samples = 2
    (small / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    base = [str(runs["alm"]), str(small), "--only", "mse", "progress=false", "--out", str(tmp_path / "t")]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the runs have different samples (samples 0..n-1 of each: alm 4, ddim 2); pass --common")
    assert main([*base, "--common"]) == 0
    assert _cells(tmp_path / "t" / "table.csv", "samples") == {"alm": "2/4 (common)", "ddim": "2/2 (common)"}
    # the library calls (runner, experiment driver) name the run's size: a missing sample is an error
    with pytest.raises(DataError, match=r"lacks 2 of the 4 samples to evaluate \(2-3\); finish the run: python run.py"):
        evaluate_run(small, prepare_metrics(compose_evaluate(["metrics=basic"]).metrics), torch.device("cpu"),
                     progress=False, num_samples=4)


def test_a_damaged_sample_file_is_one_line_naming_it_and_the_repair(runs, capsys):
    run = runs["ddim"]
    data = (run / "samples" / "00002.pt").read_bytes()
    (run / "samples" / "00002.pt").write_bytes(data[: len(data) // 2])  # truncated
    args = [str(run), "--only", "mse", "progress=false", "force=true"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'samples' / '00002.pt'}: unreadable sample (") and err.count("\n") == 1
    assert err.rstrip().endswith(f"run the run's command again to recompute it: python run.py ... hydra.run.dir={run} "
                                 f"(the run's config: {run / 'config.yaml'})")
    (run / "samples" / "00002.pt").write_bytes(data)
    (run / "samples" / "00001.pt").write_bytes(b"")  # zero bytes; Hydra wrote the run's overrides
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("- backbone=gmm\n- method=ddim\n- shard_index=1\n- shard_count=2\n")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'samples' / '00001.pt'}: unreadable sample (") and err.count("\n") == 1
    assert err.rstrip().endswith("recompute it: python run.py backbone=gmm method=ddim")  # every shard, one process
    from alm.evaluate import UnreadableSampleError, evaluate_run  # the runner can catch it and set the file aside

    with pytest.raises(UnreadableSampleError) as caught:
        evaluate_run(run, prepare_metrics(compose_evaluate(["metrics=basic"]).metrics), torch.device("cpu"),
                     progress=False, force=True)
    assert caught.value.path == run / "samples" / "00001.pt"


def test_each_sample_file_is_read_once_per_evaluation(runs, monkeypatch):
    from alm.evaluate import evaluate_run

    loads, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(str(f)) or load(f, *a, **k))
    mset = prepare_metrics(compose_evaluate(["metrics=gmm"]).metrics)
    res = evaluate_run(runs["alm"], mset, torch.device("cpu"), progress=False, force=True)
    assert sorted(loads) == sorted(str(p) for p in (runs["alm"] / "samples").glob("*.pt"))
    assert sorted(res.costs) == [0, 1, 2, 3] and "seconds" in res.costs[0]  # the runner's cost rows, read once
