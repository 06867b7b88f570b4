"""Example clips of ``dataset=synthetic_motion``: one skeleton strip per action family, plus transitions.

For each action family the first clip of the split that holds that family alone, then the first
``--transitions`` clips that blend two actions; each drawn from its FEATURES (``recover_joints``, so the
picture shows what the data encode) with ``alm.motion.plot.motion_strip``, its caption above, all stacked
into a grid in one PNG. Also prints the split's family counts and its skating ratio (CondMDI's measure, 20 fps).

    python scripts/show_synthetic_motion.py [--out results/motion_embedded/data_examples.png] [--split test]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from alm.errors import ALMError  # noqa: E402

OUT = ROOT / "results" / "motion_embedded" / "data_examples.png"


def examples(data, transitions: int) -> list[int]:
    """Indices: the first single-action clip of each family (in ``FAMILIES`` order), then the first
    ``transitions`` two-action clips."""
    from alm.motion.procedural import FAMILIES

    first: dict[str, int] = {}
    blends: list[int] = []
    for i, record in enumerate(data.data.clips):
        actions = record["action"]
        if len(actions) == 1 and actions[0] not in first:
            first[actions[0]] = i
        elif len(actions) == 2 and len(blends) < transitions:
            blends.append(i)
        if len(first) == len(FAMILIES) and len(blends) == transitions:
            break
    return [first[f] for f in FAMILIES if f in first] + blends


def grid(images: list[np.ndarray], columns: int = 2, gap: int = 8) -> np.ndarray:
    """Images (H, W, 3) in row-major cells of one size, top-left aligned on white."""
    h = max(im.shape[0] for im in images) + gap
    w = max(im.shape[1] for im in images) + gap
    rows = -(-len(images) // columns)
    out = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        out[r * h:r * h + im.shape[0], c * w:c * w + im.shape[1]] = im
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(OUT), help="PNG to write")
    ap.add_argument("--split", default="test")
    ap.add_argument("--transitions", type=int, default=3, help="two-action clips drawn after the families")
    ap.add_argument("--every", type=int, default=8, help="draw every k-th frame")
    ap.add_argument("--columns", type=int, default=2)
    ap.add_argument("--azim", type=float, default=-30.0, help="camera azimuth (degrees; plot.motion_strip)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        from PIL import Image

        from alm.config import build, compose
        from alm.motion.features import recover_joints
        from alm.motion.geometry import skating_ratio
        from alm.motion.plot import motion_strip

        data = build(compose(["dataset=synthetic_motion", f"dataset.split={args.split}"]).dataset)
        start = time.perf_counter()
        data[0]  # generated (or read from the cache) on first use
        print(f"{args.split}: {len(data)} clips ready in {time.perf_counter() - start:.1f} s")
        feats = torch.from_numpy(np.asarray(data.data.features, dtype=np.float64))
        joints = recover_joints(feats)
        ratio = skating_ratio(joints)
        families = Counter(a for r in data.data.clips for a in r["action"])
        singles = Counter(r["action"][0] for r in data.data.clips if len(r["action"]) == 1)
        blends = sum(len(r["action"]) == 2 for r in data.data.clips)
        print(f"skating ratio (CondMDI, 20 fps): mean {ratio.mean():.4f} over {len(data)} clips; "
              f"{blends} clips blend two actions")
        for name, count in families.most_common():
            member = [i for i, r in enumerate(data.data.clips) if name in r["action"]]
            print(f"  {name:9s} in {count:4d} clips ({singles[name]:4d} alone)  skating {ratio[member].mean():.4f}")
        rows = []
        for i in examples(data, args.transitions):
            item = data[i]
            title = f"{item.meta['name']}: {item.label}"
            rows.append(motion_strip(joints[i].numpy(), np.ones(item.meta["length"], dtype=bool), title=title,
                                     every=args.every, px_per_m=70.0, max_width=1600, azim=args.azim))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid(rows, args.columns)).save(out, optimize=True)
        print(f"wrote {out} ({len(rows)} strips)")
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
