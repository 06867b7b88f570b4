"""Sample completions: python run.py [group=option ...] [key=value ...]  (Hydra; -m for sweeps).

Examples:
    python run.py                                   # the default run (ALM on MNIST, backbone=embedded)
    python run.py method=syncsde num_samples=32
    python run.py -m method=alm method.w2=0.001,0.005,0.01
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from alm.config import register_resolvers

register_resolvers()

#: the columns printed after a run (all of them are in <run>/table.md and metrics.csv)
SHOWN = ["method", "samples", "mse", "mse_hole", "psnr", "ssim", "coherence", "tv", "energy_distance",
         "variance_ratio", "seconds"]


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from alm.errors import ALMError
    from alm.runner import run
    from alm.tables import markdown_table

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(markdown_table([summary], columns=[c for c in SHOWN if c in summary]))
    print(f"images: {run_dir / 'images'}  grid: {run_dir / 'grid.png'}  table: {run_dir / 'table.md'}")
    return summary.get("mse")


if __name__ == "__main__":
    main()
