"""Figures from run folders (matplotlib, Agg canvas; no pyplot state): the paper's comparison grid
(Fig. 2), ablation grid (Fig. 3), wide-image strips (Fig. 5), long-video strips and side-by-side videos
(Fig. 7 / 11), and metric-vs-weight plots for sweeps.

    python -m alm.figures grid     --runs DIR [DIR ...] [--labels a,b] [--rows 6] --out fig2.png
    python -m alm.figures ablation --runs ABL [ABL ...] --reference ALM [--labels ...] [--per-row 3] --out fig3.png
    python -m alm.figures strip    --runs DIR [DIR ...] [--samples 0,1] [--stride 384] [--by sample] --out wide.png
    python -m alm.figures sweep    --runs DIR [DIR ...] --param method.w2 --metrics mse,ssim [--series method.name] --out sweep.png

Every figure reads ``samples/NNNNN.pt`` (``source``, ``masked``, ``output`` in [-1, 1]); the metric
values of a sweep come from ``summary.json`` (sampling) and ``eval/`` (``alm.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from alm import io
from alm.io import shown_masked
from alm.errors import ALMError, ConfigError, DataError

SOURCE_MASKED = "Source (Masked)"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with io.replacing(path) as f:  # a temporary name of this writer's own
        fig.savefig(f, format="png", bbox_inches="tight", pad_inches=0.05)
    return path


def _show(ax, image: torch.Tensor) -> None:
    arr = io.to_uint8(image)
    if arr.ndim == 2:
        ax.imshow(arr, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(arr, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def load_sample(run_dir: Path, index: int) -> dict:
    path = Path(run_dir) / "samples" / f"{index:05d}.pt"
    if not path.is_file():
        raise DataError(f"{run_dir} has no sample {index}")
    return torch.load(path, map_location="cpu", weights_only=False)


def common_samples(run_dirs: Sequence[Path]) -> list[int]:
    """Sample indices present in every run, sorted."""
    sets = [{int(f.stem) for f in (Path(d) / "samples").glob("*.pt") if f.stem.isdigit()} for d in run_dirs]
    if not sets or not sets[0]:
        raise DataError(f"no samples in {run_dirs[0] if run_dirs else 'the given runs'}")
    return sorted(set.intersection(*sets))


def _pick(run_dirs: Sequence[Path], samples: Optional[Sequence[int]], count: int) -> list[int]:
    avail = common_samples(run_dirs)
    if samples:
        missing = [i for i in samples if i not in avail]
        if missing:
            raise DataError(f"sample(s) {missing} are not in every run")
        return list(samples)
    if not avail:
        raise DataError("the runs have no sample in common")
    return avail[:count]


def _cell(image: torch.Tensor, cell: float) -> tuple[float, float]:
    h, w = image.shape[-2:]
    return cell * w / h, cell  # (width, height) of one image in inches: height fixed, width by aspect


def comparison_grid(columns: Sequence[tuple[str, Path]], path: Path, rows: int = 6, samples: Optional[Sequence[int]] = None,
                    output_key: str = "output", show_source: bool = False, cell: float = 1.6) -> Path:
    """Fig. 2: rows = samples; columns = the masked source, then each run's output (label on top)."""
    if not columns:
        raise ConfigError("comparison_grid: no runs")
    ids = _pick([d for _, d in columns], samples, rows)
    heads = ([("Source", "source")] if show_source else []) + [(SOURCE_MASKED, "masked")]
    titles = [h for h, _ in heads] + [label for label, _ in columns]
    first = load_sample(columns[0][1], ids[0])["source"]
    cw, ch = _cell(first, cell)
    fig = _figure(cw * len(titles), ch * len(ids) + 0.35)
    axes = fig.subplots(len(ids), len(titles), squeeze=False)
    for r, i in enumerate(ids):
        ref = load_sample(columns[0][1], i)
        # the masked input with its hole mid-grey (the model's hole value, e.g. black, hides it on dark images)
        images = [shown_masked(ref["source"], ref["mask"]) if key == "masked" else ref[key] for _, key in heads]
        for _, run_dir in columns:
            d = load_sample(run_dir, i)
            if output_key not in d:
                raise DataError(f"{run_dir} sample {i} has no {output_key!r}")
            images.append(d[output_key].clamp(-1, 1))
        for c, im in enumerate(images):
            _show(axes[r][c], im)
            if r == 0:
                axes[r][c].set_title(_wrap(titles[c], cw), fontsize=8)
    fig.subplots_adjust(wspace=0.03, hspace=0.03)
    return _save(fig, path)


def _wrap(title: str, width_inches: float) -> str:
    """A column title broken at spaces / underscores so that it fits its column (about 13 characters an inch)."""
    import textwrap

    lines = textwrap.wrap(title.replace("_", "_ "), max(8, int(13 * width_inches)), break_long_words=False)
    return "\n".join(line.replace("_ ", "_") for line in lines)


def ablation_grid(ablations: Sequence[tuple[str, Path]], reference: tuple[str, Path], path: Path, per_row: int = 3,
                  samples: Optional[Sequence[int]] = None, output_key: str = "output", cell: float = 1.4) -> Path:
    """Fig. 3: one row per ablation; each row shows ``per_row`` samples as (masked source, ablation, reference)."""
    if not ablations:
        raise ConfigError("ablation_grid: no ablation runs")
    dirs = [d for _, d in ablations] + [reference[1]]
    ids = _pick(dirs, samples, per_row)
    first = load_sample(reference[1], ids[0])["source"]
    cw, ch = _cell(first, cell)
    ncol = 3 * len(ids)
    fig = _figure(cw * ncol + 0.6, ch * len(ablations) + 0.35 * len(ablations))
    axes = fig.subplots(len(ablations), ncol, squeeze=False)
    for r, (label, run_dir) in enumerate(ablations):
        for j, i in enumerate(ids):
            ref = load_sample(reference[1], i)
            triple = [(SOURCE_MASKED, ref["masked"]), (label, load_sample(run_dir, i)[output_key].clamp(-1, 1)),
                      (reference[0], ref[output_key].clamp(-1, 1))]
            for k, (title, im) in enumerate(triple):
                ax = axes[r][3 * j + k]
                _show(ax, im)
                ax.set_title(title, fontsize=8)
    fig.subplots_adjust(wspace=0.03, hspace=0.25)
    return _save(fig, path)


def _text_of(sample: dict) -> str:
    meta = sample.get("meta") or {}
    text = meta.get("prompt") or (sample.get("label") if isinstance(sample.get("label"), str) else "")
    return text if len(text) <= 60 else text[:57] + "..."


def wide_strip(columns: Sequence[tuple[str, Path]], path: Path, samples: Sequence[int] = (0,), output_key: str = "output",
               stride: Optional[int] = None, height: float = 1.2, by: str = "run") -> Path:
    """Fig. 5: wide images, one row per run (label on the left), one column per sample (its prompt on top).
    ``by="sample"``: transposed, one row per sample (its prompt on the left), one column per run (label on top).
    ``stride`` (px) draws dashed lines where the patches of an autoregressive outpainting begin."""
    if not columns:
        raise ConfigError("wide_strip: no runs")
    if by not in ("run", "sample"):
        raise ConfigError(f"wide_strip: by={by!r}; choose 'run' or 'sample'")
    ids = _pick([d for _, d in columns], samples, len(samples))
    first = load_sample(columns[0][1], ids[0])[output_key]
    h, w = first.shape[-2:]
    cells = [[(r, c) for c in range(len(ids))] for r in range(len(columns))]  # (run, sample) per axis
    if by == "sample":
        cells = [list(col) for col in zip(*cells)]
    nrows, ncols = len(cells), len(cells[0])
    fig = _figure(height * w / h * ncols + (1.6 if by == "sample" else 1.0), height * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, line in enumerate(cells):
        for c, (run, k) in enumerate(line):
            label, run_dir = columns[run]
            d = load_sample(run_dir, ids[k])
            ax = axes[r][c]
            _show(ax, d[output_key].clamp(-1, 1))
            if stride:
                for x in range(stride, d[output_key].shape[-1], stride):
                    ax.axvline(x - 0.5, color="white", lw=0.6, ls="--", alpha=0.7)
            side, top = (label, _text_of(d)) if by == "run" else (_wrap_text(_text_of(d), 24), label)
            if c == 0 and side:
                kw = dict(fontsize=9, rotation=90) if by == "run" else dict(fontsize=7, rotation=0, ha="right", va="center")
                ax.set_ylabel(side, **kw)
            if r == 0 and top:
                ax.set_title(top, fontsize=8)
    fig.subplots_adjust(wspace=0.03, hspace=0.05)
    return _save(fig, path)


def video_comparison(columns: Sequence[tuple[str, Path]], output: Path, samples: Sequence[int] = (0,),
                     every: int = 8, fps: float = 8.0) -> list[Path]:
    """Fig. 7 / 11 style, per sample: ``strips_<index>.png`` (one strip per run: every ``every``-th frame with
    frame numbers, the windows and their seams, the run's label on the left) and ``compare_<index>.mp4`` /
    ``.gif`` (the runs' videos side by side, in the order of ``columns``)."""
    from alm import video_io

    if not columns:
        raise ConfigError("video_comparison: no runs")
    output = Path(output)
    made = []
    for k in _pick([d for _, d in columns], samples, len(samples)):
        strips, clips = [], []
        for label, run_dir in columns:
            d = load_sample(run_dir, k)
            clip, meta = d["output"].float(), d.get("meta") or {}
            if clip.dim() != 4:
                raise DataError(f"{run_dir} sample {k}: output of shape {tuple(clip.shape)} is not a video (C, F, H, W)")
            strips.append(video_io.strip(clip, every, meta.get("windows"), meta.get("seams"), label=label,
                                         label_chars=max(len(c[0]) for c in columns)))
            clips.append(torch.nn.functional.pad(clip, (0, 1), value=1.0))  # a white column between the videos
        png = output / f"strips_{k:05d}.png"
        io.save_png(video_io.comparison(strips), png)
        side = torch.cat(clips, dim=-1)[..., :-1]
        video_io.save_mp4(side, output / f"compare_{k:05d}.mp4", fps=fps)
        video_io.save_gif(side, output / f"compare_{k:05d}.gif", fps=fps)
        made += [png, output / f"compare_{k:05d}.mp4"]
    return made


def _wrap_text(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


# -- sweeps ------------------------------------------------------------------------------------------
def run_values(run_dir: Path) -> dict[str, Any]:
    """A run's aggregated values: ``summary.json`` (sampling) updated with ``eval/`` (evaluation)."""
    run_dir = Path(run_dir)
    out: dict[str, Any] = {}
    if (run_dir / "summary.json").is_file():
        out.update(json.loads((run_dir / "summary.json").read_text()))
    values_path = run_dir / "eval" / "values.json"  # alm.evaluate's store
    if values_path.is_file():
        from alm.tables import read_csv

        values = json.loads(values_path.read_text())
        from alm.run_folder import STORE_ROWS

        store = run_dir / "eval" / STORE_ROWS
        _, rows = read_csv(store) if store.is_file() else ([], [])
        for k, v in values.items():
            if v.get("per_sample"):
                xs = [float(r[k]) for r in rows if r.get(k) not in (None, "") and int(r["sample"]) in set(v["samples"])]
                xs = [x for x in xs if math.isfinite(x)]
                out[k] = sum(xs) / len(xs) if xs else math.nan
            else:
                out[k] = v.get("value", math.nan)
    return out


def sweep_points(run_dirs: Sequence[Path], param: str, series: Optional[str] = "method.name") -> list[dict]:
    """One point per run: the swept ``param`` (a dotted config key), the ``series`` name, every value."""
    from omegaconf import OmegaConf

    points = []
    for d in run_dirs:
        cfg_path = Path(d) / "config.yaml"
        if not cfg_path.is_file():
            raise DataError(f"{d} has no config.yaml")
        cfg = OmegaConf.load(cfg_path)
        x = OmegaConf.select(cfg, param)
        if x is None:
            raise ConfigError(f"{d}: the config has no {param}")
        name = str(OmegaConf.select(cfg, series)) if series else ""
        points.append({"param": float(x), "series": name, **run_values(d)})
    return points


def sweep_plot(points: Sequence[Mapping[str, Any]], param: str, metrics: Sequence[str], path: Path,
               directions: Optional[Mapping[str, bool]] = None, logx: Optional[bool] = None) -> Path:
    """Each metric against the swept weight, one panel per metric, one line per series (e.g. method)."""
    if not points or not metrics:
        raise ConfigError("sweep_plot: no points or no metrics")
    missing = [m for m in metrics if all(m not in p for p in points)]
    if missing:
        raise DataError(f"sweep_plot: no run has {', '.join(missing)} (evaluate the runs first)")
    xs = [float(p["param"]) for p in points]
    if logx is None:
        pos = [x for x in xs if x > 0]
        logx = len(pos) == len(xs) and max(pos) / min(pos) >= 20
    ncols = min(4, len(metrics))  # at most 4 panels a row
    nrows = -(-len(metrics) // ncols)
    fig = _figure(3.2 * ncols, 2.8 * nrows)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    series = list(dict.fromkeys(p.get("series", "") for p in points))
    for ax, m in zip(axes, metrics):
        for s in series:
            pts = sorted((float(p["param"]), float(p[m])) for p in points if p.get("series", "") == s and m in p)
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", ms=3, label=s or None)
        arrow = "" if not directions or m not in directions else (" (higher is better)" if directions[m] else " (lower is better)")
        ax.set_title(m + arrow, fontsize=9)
        ax.set_xlabel(param, fontsize=8)
        if logx:
            ax.set_xscale("log")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if any(series):
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# -- command line ------------------------------------------------------------------------------------
def _labels(text: str, runs: Sequence[Path]) -> list[str]:
    if text:
        labels = [l.strip() for l in text.split(",")]
        if len(labels) != len(runs):
            raise ConfigError(f"--labels gives {len(labels)} labels for {len(runs)} runs")
        return labels
    from alm.run_folder import default_labels

    return default_labels(runs)


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()] if text else []


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alm.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("grid", "ablation", "strip", "sweep"))
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--labels", default="")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=6, help="grid: number of samples (rows)")
    ap.add_argument("--samples", default="", help="comma-separated sample indices")
    ap.add_argument("--output-key", default="output")
    ap.add_argument("--reference", type=Path, default=None, help="ablation: the full method's run")
    ap.add_argument("--reference-label", default="ALM")
    ap.add_argument("--per-row", type=int, default=3)
    ap.add_argument("--stride", type=int, default=None, help="strip: patch stride in px (dashed lines)")
    ap.add_argument("--by", choices=("run", "sample"), default="run", help="strip: one row per run (default) or per sample")
    ap.add_argument("--param", default="", help="sweep: the swept config key, e.g. method.w2")
    ap.add_argument("--metrics", default="", help="sweep: comma-separated metric columns")
    ap.add_argument("--series", default="method.name", help="sweep: config key naming each line")
    args = ap.parse_args(argv)
    try:
        runs = args.runs
        samples = _ints(args.samples)
        if args.kind == "grid":
            out = comparison_grid(list(zip(_labels(args.labels, runs), runs)), args.out, rows=args.rows,
                                  samples=samples or None, output_key=args.output_key)
        elif args.kind == "ablation":
            if args.reference is None:
                raise ConfigError("ablation needs --reference RUN (the full method)")
            out = ablation_grid(list(zip(_labels(args.labels, runs), runs)), (args.reference_label, args.reference),
                                args.out, per_row=args.per_row, samples=samples or None, output_key=args.output_key)
        elif args.kind == "strip":
            out = wide_strip(list(zip(_labels(args.labels, runs), runs)), args.out, samples=samples or (0,),
                             output_key=args.output_key, stride=args.stride, by=args.by)
        else:
            if not args.param or not args.metrics:
                raise ConfigError("sweep needs --param KEY and --metrics a,b")
            from alm.run_folder import find_runs

            points = sweep_points(find_runs(runs), args.param, args.series or None)
            out = sweep_plot(points, args.param, [m.strip() for m in args.metrics.split(",")], args.out)
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
