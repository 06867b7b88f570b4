"""The paper's Fig. 6 for a table's runs: per motion, the real motion and every method's completion, one row each.

Observed frames are orange, generated ones blue (``alm.motion.plot``); every row is drawn in the first row's
frame, so a completion that drifts away from the observed frames shows it. Called by an experiment's
``figures:`` section (``scripts/run_experiment.py``, e.g. experiments/table4.yaml) with the finished runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from alm.errors import DataError
from alm.replications import base_label
from alm.run_folder import load_sample, sample_path


def record_rows(records: Sequence[tuple[str, dict]]) -> list[tuple[str, object, object]]:
    """``comparison_strip`` rows for one sample: the real motion (its observed frames orange), then each run's
    output, from the records ``[(label, record), ...]`` of the same sample in several runs."""
    from alm.tasks.motion import motion_joints

    first = records[0][1]
    real, observed = motion_joints(first, "source")
    rows = [("real motion", real, observed)]
    for label, record in records:
        joints, observed = motion_joints(record, "output")
        rows.append((label, joints, observed))
    return rows


def figure6(runs: Sequence[tuple], output: Path, samples: int = 4, replication: int = 0, every: int = 10) -> list[Path]:
    """``fig6_<k>.png`` for the first ``samples`` motions, from replication ``replication`` of each row (labels
    ``"<row> #<r>"``; a table without replications uses its rows as they are)."""
    output = Path(output)
    chosen = [(base_label(label), Path(run_dir)) for label, run_dir, *_ in runs
              if label == base_label(label) or label.endswith(f" #{replication}")]
    if not chosen:
        raise DataError(f"figure6: no finished run of replication {replication}")
    from alm.motion.plot import comparison_strip

    paths = []
    for k in range(samples):
        if not all(sample_path(d, k).is_file() for _, d in chosen):
            break
        records = [(label, load_sample(d, k)) for label, d in chosen]
        caption = str(records[0][1].get("label") or "")
        image = comparison_strip(record_rows(records), every=every, title=f'sample {k}: "{caption}"')
        path = output / f"fig6_{k}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(path)
    return paths
