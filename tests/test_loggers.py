"""Experiment loggers: the no-op default and wandb (offline), one run per job, finished even on a crash."""

from __future__ import annotations

import json
import time

import pytest
from _eval_runs import copy_run, gmm_runs

from alm.errors import ConfigError
from alm.evaluate import compose_evaluate
from alm.loggers import NullLogger, WandbLogger, make_logger


def _wandb_node(tmp_path, **extra):
    node = dict(compose_evaluate(["logger=wandb"]).logger)
    return {**node, **extra}


def _written(path, marker: bytes, timeout: float = 20.0) -> bytes:
    """The run file's bytes once ``marker`` is in it: wandb's service writes the file asynchronously
    (finish() returns before the first run's records reach the disk)."""
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if marker in data or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_default_logger_is_a_no_op(tmp_path):
    assert isinstance(make_logger(None, tmp_path), NullLogger)
    node = compose_evaluate([]).logger
    with make_logger(node, tmp_path) as logger:
        logger.log_samples([{"sample": 0, "mse": 1.0}])
        logger.log_summary({"mse": 1.0}, tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="cannot import"):
        make_logger({"_target_": "alm.nothing.Here"}, tmp_path)


def test_wandb_offline_one_run_per_job_finished_between_jobs(tmp_path_factory, tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_DIR", raising=False)
    runs = gmm_runs(tmp_path_factory)
    ids = []
    for label in ("alm", "ddim"):  # two jobs of a multirun, one after the other in one process
        run_dir = copy_run(runs[label], tmp_path)
        rows = [json.loads(json.dumps({"sample": i, "mse": 0.1 * i, "label": None})) for i in range(4)]
        with make_logger(_wandb_node(tmp_path), run_dir, {"method": {"name": label}, "seed": 0}) as logger:
            assert isinstance(logger, WandbLogger) and wandb.run is logger.run
            logger.log_samples(rows)
            logger.log_summary({"mse": 0.15, "method": label, "note": None}, run_dir / "grid.png")
        assert wandb.run is None  # finished when the job ended
        info = json.loads((run_dir / "wandb_run.json").read_text())
        assert info["mode"] == "offline"
        ids.append(info["id"])
        files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1
        data = _written(files[0], b"mse")
        assert b"mse" in data and label.encode() in data  # summary and config were recorded
        assert list((run_dir / "wandb").glob("offline-run-*/files/media/images/grid*.png"))
    assert len(set(ids)) == 2


def test_wandb_run_is_finished_when_the_job_crashes(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    with pytest.raises(RuntimeError, match="sampling failed"):
        with make_logger(_wandb_node(tmp_path), tmp_path / "run", None):
            raise RuntimeError("sampling failed")
    assert wandb.run is None
    assert list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))  # $WANDB_DIR honoured
    with pytest.raises(ConfigError, match="mode"):
        make_logger(_wandb_node(tmp_path, mode="sometimes"), tmp_path / "run2")
