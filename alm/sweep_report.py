"""A multirun goes on past a failing job and ends with one summary: a Hydra callback.

``run.py`` returns a ``JobFailure`` from a job that stopped with a one-line error (a divergence, a bad
input) instead of exiting, so Hydra runs the remaining jobs. ``FailureReport`` collects those jobs
and, once every job has run, prints one summary (each failed job's command, folder and error) and
exits 1; a sweep without failures exits 0. Registered in conf/config.yaml under ``hydra.callbacks``.
The basic launcher (the project's) runs every job in this process, so the report is kept in memory.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback

TARGET = "alm.sweep_report.FailureReport"


@dataclass
class JobFailure:
    """What ``run.py`` returns from a multirun job that failed: its one-line error and its run folder."""

    message: str
    folder: str


@dataclass
class FailedJob:
    overrides: list[str]
    folder: str
    message: str


def reported(hydra_cfg: Any) -> bool:
    """Whether this multirun reports its failed jobs (else a failing job ends the sweep, as before)."""
    callbacks = hydra_cfg.get("callbacks") or {}
    return any(str((cb or {}).get("_target_")) == TARGET for cb in callbacks.values())


def summary(jobs: int, failed: list[FailedJob]) -> str:
    """The end-of-sweep report: one ``error:`` line, then per failed job its command, folder and error."""
    lines = [f"error: {len(failed)} of {jobs} jobs failed (the others finished):"]
    for job in failed:
        lines += [f"  python run.py {' '.join(shlex.quote(o) for o in job.overrides)}",
                  f"    folder: {job.folder}", f"    {job.message}"]
    return "\n".join(lines)


class FailureReport(Callback):
    """Counts a multirun's jobs, keeps the failed ones, reports them at the end (exit 1 if any)."""

    def __init__(self) -> None:
        self.jobs = 0
        self.failed: list[FailedJob] = []

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.jobs, self.failed = 0, []

    def on_job_end(self, config: Any, job_return: JobReturn, **kwargs: Any) -> None:
        self.jobs += 1
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return.return_value, JobFailure):
            failure = job_return.return_value
            self.failed.append(FailedJob(list(job_return.overrides or []), failure.folder, failure.message))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.failed:
            print(summary(self.jobs, self.failed), file=sys.stderr, flush=True)
            sys.exit(1)
