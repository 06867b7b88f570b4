"""Sample completions: python run.py [group=option ...] [key=value ...]  (Hydra; -m for sweeps).

Examples:
    python run.py                                   # the default run (ALM on MNIST, backbone=embedded)
    python run.py method=syncsde num_samples=32
    python run.py -m method=alm method.w2=0.001,0.005,0.01

A bad input is one line on stderr starting with ``error:`` (exit 1). A sweep (-m) runs every job; a job
that fails is reported at its end and once more in one summary after the last job (alm/sweep_report.py).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alm.config import register_resolvers

register_resolvers()

#: the columns printed after a run (all of them are in <run>/table.md and metrics.csv)
SHOWN = ["method", "samples", "mse", "mse_hole", "psnr", "ssim", "coherence", "tv", "energy_distance",
         "variance_ratio", "seconds"]


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from alm.errors import ALMError
    from alm.run_folder import done_indices
    from alm.run_names import run_dir_in_app
    from alm.runner import run
    from alm.sweep_report import JobFailure, reported
    from alm.tables import markdown_table

    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.paths.runs)  # until the run's own folder is known
    try:
        run_dir = run_dir_in_app(cfg)
        summary = run(cfg, run_dir)
    except KeyboardInterrupt:  # Ctrl-C: the stored samples are kept; the same command resumes
        print(f"interrupted: {len(done_indices(run_dir))} of {cfg.num_samples} samples are stored in {run_dir}; "
              f"resume with: python run.py {shlex.join(sys.argv[1:])}", file=sys.stderr)
        sys.exit(130)
    except (ALMError, OSError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        if hydra_cfg.mode == RunMode.MULTIRUN and reported(hydra_cfg):
            return JobFailure(str(err), str(run_dir))  # the sweep goes on; its summary lists this job
        sys.exit(1)
    print(markdown_table([summary], columns=[c for c in SHOWN if c in summary]))
    print(f"images: {run_dir / 'images'}  grid: {run_dir / 'grid.png'}  table: {run_dir / 'table.md'}")
    return summary.get("mse")


# --- before Hydra: a bad override or an unwritable results folder as one line ------------------------
def first_values(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's first job (``k=a,b`` -> ``k=a``), the job every sweep is checked by;
    a sweep that only Hydra can enumerate (``glob``) is left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    out = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        try:
            out.append(f"{o.get_key_element()}={next(o.sweep_string_iterator())}")
        except HydraException:
            pass
    return out


def with_known_keys(message: str, overrides: list[str]) -> str:
    """Hydra's "Could not override 'a.b'" with the keys ``a`` does have (composed without that override)."""
    from alm.config import compose
    from alm.errors import ConfigError

    bad = re.match(r"Could not override '([^']+)'", message)
    if not bad:
        return message
    key = bad.group(1)
    parent = key.rpartition(".")[0]
    try:
        cfg = compose([o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key])
    except ConfigError:
        return message
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return message
    keys = ", ".join(sorted(str(k) for k in node if not str(k).startswith("_")))
    return f"{message.rstrip('.')} ({parent or 'the config'} has: {keys}; +{key}=... adds a key)"


def unwritable(folder: Path) -> Optional[str]:
    """Why ``folder`` cannot be made or written to (its nearest existing ancestor), or None."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK):  # also false for root on a read-only file system
        return f"{existing} is read-only"
    return None


def preflight(argv: list[str]) -> tuple[Optional[str], bool]:
    """(an ``error:`` line or None, whether to stop now): checked before Hydra starts.

    A config error is printed before Hydra's own report (kept: it lists the config search path); an
    unwritable results folder stops here (Hydra would fail with a traceback creating the run folder).
    """
    from hydra.errors import HydraException

    from alm.config import compose, hydra_error_line
    from alm.errors import ConfigError

    flags = {a for a in argv if a.startswith("-")}
    if flags - {"-m", "--multirun"}:  # --help, --cfg, --config-name ...: Hydra's own business
        return None, False
    multirun = bool(flags)
    job = [a for a in argv if not a.startswith("-")]
    try:
        job = first_values(job) if multirun else job
        cfg = compose(job)
    except (ConfigError, HydraException) as err:  # HydraException: an override that does not parse
        message = str(err) if isinstance(err, ConfigError) else hydra_error_line(err)
        return f"error: {with_known_keys(message, job)}", False
    given = dict(o.split("=", 1) for o in job if "=" in o)  # a run's folder is below paths.runs, or given
    folder = Path(given.get("hydra.sweep.dir" if multirun else "hydra.run.dir", cfg.paths.runs).split("${")[0])
    why = unwritable(folder)
    if why:
        return f"error: cannot write the results folder {folder}: {why} (choose another: paths.runs=... or hydra.run.dir=...)", True
    return None, False


if __name__ == "__main__":
    try:
        line, stop = preflight(sys.argv[1:])
        if line:
            print(line, file=sys.stderr, flush=True)
            if stop:
                sys.exit(1)
        main()
    except KeyboardInterrupt:  # before a run started (config, imports): nothing was written
        print("interrupted", file=sys.stderr)
        sys.exit(130)
