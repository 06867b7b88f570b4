"""Download named checkpoints into the Hugging Face cache (for machines WITH internet).

    python scripts/fetch_weights.py sd15                  # one checkpoint, fp32 weights
    python scripts/fetch_weights.py sd15 sdxl --variant fp16
    python scripts/fetch_weights.py --all
    python scripts/fetch_weights.py animatediff modelscope   # the text-to-video models (animatediff brings sd15)
    python scripts/fetch_weights.py lavie                 # LaVie's lavie_base.pt + SD 1.4's VAE, text encoder, configs
    python scripts/fetch_weights.py --list                # the name -> repository table (offline)

Only the files a run loads are fetched (``model_index.json``, the component configs, tokenizers,
the scheduler, one weights format per component; no safety checker, no ``.ckpt``), at the revision
pinned in ``alm/backbones/checkpoints.py``. The cache is the standard one (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), which is where ``backbone=<name>`` looks;
copy it to an offline machine as is. With ``--variant fp16`` run with ``backbone.variant=fp16``.
Gated repositories need ``hf auth login`` (or ``HF_TOKEN``) first.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alm.backbones.checkpoints import CHECKPOINTS, Checkpoint, select_files  # noqa: E402


def table() -> str:
    """The name -> repository table, one checkpoint a line."""
    rows = [(c.name, f"{c.repo_id}@{c.revision[:12]}", c.about) for c in CHECKPOINTS.values()]
    w0, w1 = (max(len(r[i]) for r in rows) for i in (0, 1))
    return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)


def folder_size(folder: Path) -> int:
    """Bytes of the files of a snapshot folder (following the cache's symlinks to its blobs)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch(ckpt: Checkpoint, variant: str | None, revision: str | None = None) -> tuple[Path, str | None]:
    """Download ``ckpt``; returns its snapshot folder and the variant fetched (None: plain weights,
    also when the repository has no ``variant`` files at all, e.g. the pixel DDPMs)."""
    from huggingface_hub import HfApi, snapshot_download

    revision = revision or ckpt.revision
    files = HfApi().list_repo_files(ckpt.repo_id, revision=revision)
    if variant and not any(f".{variant}." in f for f in files):
        variant = None
    single = tuple(c for c in ckpt.components if c in files)  # components naming one file (lavie_base.pt)
    wanted = select_files(files, tuple(c for c in ckpt.components if c not in single), variant) + list(single)
    return Path(snapshot_download(ckpt.repo_id, revision=revision, allow_patterns=wanted)), variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="checkpoints:\n" + table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="checkpoint names (see below)")
    parser.add_argument("--all", action="store_true", help="fetch every checkpoint")
    parser.add_argument("--variant", default=None, help="weights variant, e.g. fp16 (half the download)")
    parser.add_argument("--revision", default=None, help="a branch or commit instead of the pinned one (one name only; "
                        "then run with backbone.revision=<it>)")
    parser.add_argument("--list", action="store_true", help="print the name -> repository table and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(table())
        return 0
    names = list(CHECKPOINTS) if args.all else args.names
    unknown = [n for n in names if n not in CHECKPOINTS]
    if not names or unknown:
        what = f"unknown checkpoint(s) {', '.join(unknown)}" if unknown else "no checkpoint named"
        print(f"error: {what}; expected names from: {', '.join(CHECKPOINTS)} (or --all)", file=sys.stderr)
        return 2
    if args.revision and len(names) != 1:
        print("error: --revision needs exactly one checkpoint name", file=sys.stderr)
        return 2
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        print("error: HF_HUB_OFFLINE is set; unset it to download", file=sys.stderr)
        return 1
    asked = list(names)  # --revision is for the named checkpoint, not for what it brings along
    for name in list(names):  # a checkpoint that builds on another (animatediff: sd15) brings it along
        names[names.index(name):names.index(name)] = [r for r in CHECKPOINTS[name].requires if r not in names]
    for name in names:
        ckpt = CHECKPOINTS[name]
        try:
            folder, variant = fetch(ckpt, args.variant, args.revision if name in asked else None)
        except Exception as err:  # network, authentication, a missing variant: one line per checkpoint
            text = str(err).strip().splitlines()
            print(f"error: {name} ({ckpt.repo_id}): {type(err).__name__}: {text[0] if text else ''}", file=sys.stderr)
            return 1
        use = f"; run with backbone.variant={variant}" if variant else ""
        print(f"{name}: {ckpt.repo_id} commit {folder.name} -> {folder} ({folder_size(folder) / 1e9:.2f} GB){use}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
