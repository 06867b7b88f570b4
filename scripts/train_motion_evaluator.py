"""Train the text-motion evaluator of ``dataset=synthetic_motion`` (T2M style) -> ``weights/motion_evaluator/``.

The three networks of Guo et al.'s T2M evaluator (``alm.motion.evaluator``: a movement encoder over the
relative features without foot contacts, one movement per 4 frames; a bidirectional-GRU motion encoder over
the movements; a bidirectional-GRU text encoder over word vectors + part-of-speech one-hots) at small sizes,
trained on the ``train`` split of the synthetic motions (4,000 clips of 64 frames) so that the motion
measures of ``conf/metrics/motion-embedded.yaml`` (FID, matching score, R-precision, Diversity) read them
UNCHANGED: the folder has the real layout (``alm.motion.evaluator.evaluator_files``) and every input is
made by the metrics' own code.

========================  ==========================================================================================
inputs                    motions: ``alm.metrics.motion.evaluator_input(x, lengths, mean, std, "algebraic")``, what
                          the metrics feed the evaluator for the ground truth (relative root, normalised, 0 beyond
                          the length); captions: ``T2MEvaluator.encode_captions(tokens, "padded")`` (all 22 tokens,
                          the metrics' default ``caption_lengths: padded``)
statistics                ``dataset/t2m_{mean,std}.npy``: mean and std of the TRAIN split's relative features over
                          its frames, the std averaged within each feature group (HumanML3D ``cal_mean_variance.py``,
                          ``mean_variance``) and the root groups (0:4) and foot contacts (259:263) divided by
                          ``--feat-bias`` 5 (the evaluator's statistics: CondMDI ``data/dataset.py``,
                          ``Text2MotionDatasetV2.__init__``, ``opt.feat_bias``; ``evaluator_statistics``)
word vectors              ``glove/our_vab_*``: the train split's words + sos / eos / unk, each a FIXED seeded random
                          vector N(0, I) of size ``--word-dim`` (``word_vectors``; not learned: the text encoder's
                          ``pos_emb`` and ``input_emb`` adapt to them). A word outside it reads as ``unk``
loss                      Guo et al.'s margin-based contrastive loss (Hadsell et al. 2006; CondMDI
                          ``networks/modules.py``, ``ContrastiveLoss``): mean d(t_i, m_i)^2 over the batch's matched
                          pairs + mean max(0, margin - d(t_i, m_j))^2 over its mismatched pairs (euclidean d, as the
                          metrics measure). Simplified: every mismatched pair of the batch instead of one random
                          shift (``TextMotionMatchTrainer.backward``), pairs with the SAME caption tokens left out
                          of the negatives (the synthetic captions repeat); ``--margin`` 10 as their
                          ``negative_margin``
schedule                  Adam (lr ``--lr``, cosine decay to 0), gradients clipped at norm 0.5 (their
                          ``clip_norm``), batch ``--batch-size``; the kept epoch is the one of lowest ``val`` loss
                          (their ``finest.tar``); the movement encoder is trained jointly (theirs is pre-trained as
                          an autoencoder and frozen: ``train_mode`` / ``movement_encoder(...).detach()``)
========================  ==========================================================================================

Every random draw (initialisation, batch order, dropout, word vectors) comes from ``--seed``; one CPU thread
by default. After training, the written folder is loaded back with ``load_evaluator`` and assessed on the
``test`` split through the metric classes (``assess``): R-precision top-1/2/3 and matching score of the real
motions against their captions and against shuffled captions (the chance control), Diversity, and FID of the
test motions against other real motions (``val``, a ``train`` subset, the test motions themselves through the
generated-motion conversion) and against corrupted ones (noise, a held pose, a linear in-between).

    python scripts/train_motion_evaluator.py                          # -> weights/motion_evaluator/
    python scripts/train_motion_evaluator.py --epochs 2 --train-items 256 --out /tmp/ev

Writes ``<out>/t2m/text_mot_match/model/finest.tar`` (``movement_encoder``, ``text_encoder``,
``motion_encoder`` state dicts, ``epoch``, ``iter``), ``<out>/glove/our_vab_{data.npy,words.pkl,idx.pkl}``,
``<out>/dataset/t2m_{mean,std}.npy`` and ``<out>/TRAINING.md``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from alm.errors import ALMError, DataError  # noqa: E402

Tensor = torch.Tensor

FEAT_GROUPS = ((0, 1), (1, 3), (3, 4), (4, 67), (67, 193), (193, 259), (259, 263))  # HumanML3D feature groups
BIASED_GROUPS = ((0, 1), (1, 3), (3, 4), (259, 263))  # root rotation, root x/z, root y, foot contacts
STD_FLOOR = 1e-3
SPECIAL_WORDS = ("sos", "eos", "unk")
WORD_STREAM = 7          # alm.rng.sample_seed stream of the word vectors
ORDER_STREAM = 8         # ... of the batch orders
ASSESS_SEED = 1234       # the corruption noise and the caption shuffle of ``assess``
GROUP, TOP_K, DIVERSITY_PAIRS = 32, 3, 300


# -- data --------------------------------------------------------------------------------------------------
@dataclass
class MotionSet:
    """Motions of a split in data space: ``x`` (N, 263, 1, L) RAW absolute-root features, their metas."""

    x: Tensor
    metas: list[dict]

    @property
    def lengths(self) -> Tensor:
        return torch.tensor([int(m["length"]) for m in self.metas], dtype=torch.long)

    @property
    def tokens(self) -> list[list[str]]:
        return [list(m["tokens"]) for m in self.metas]

    def __len__(self) -> int:
        return len(self.metas)


def load_split(split: str, n: int = 0, **dataset_kwargs) -> MotionSet:
    """The first ``n`` items (0: all) of a ``dataset=synthetic_motion`` split."""
    from alm.data.synthetic_motion import SyntheticMotion

    if n > 0:  # only the first n clips are made (clip i does not depend on the split's size)
        dataset_kwargs = {**dataset_kwargs, "sizes": {**dataset_kwargs.get("sizes", {}), split: int(n)}}
    ds = SyntheticMotion(split=split, **dataset_kwargs)
    items = [ds[i] for i in range(len(ds))]
    return MotionSet(torch.stack([it.image for it in items]), [it.meta for it in items])


def relative_frames(x: Tensor, lengths: Tensor) -> Tensor:
    """(N, 263, 1, L) absolute-root motions -> (N, L, 263) float64 relative-root features, 0 beyond each length
    (``alm.motion.features.abs_to_rel``: the ground truth's conversion in ``evaluator_input``)."""
    from alm.motion.features import abs_to_rel, to_frames_major

    return abs_to_rel(to_frames_major(x).double(), lengths.tolist())


def evaluator_statistics(rel: Tensor, lengths: Tensor, feat_bias: float = 5.0,
                         floor: float = STD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 (263,) of relative features (N, L, 263) over their valid frames, as the T2M
    evaluator's ``t2m_mean`` / ``t2m_std`` are made: the std of each feature group replaced by the group's mean
    std (HumanML3D ``mean_variance``), then the root groups and the foot contacts divided by ``feat_bias``
    (``Text2MotionDatasetV2``: ``std[0:1] / opt.feat_bias`` ...). Stds below ``floor`` are raised to it."""
    valid = torch.arange(rel.shape[1])[None, :] < lengths[:, None]
    frames = rel[valid].double().numpy()
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    for lo, hi in FEAT_GROUPS:
        std[lo:hi] = std[lo:hi].mean()
    for lo, hi in BIASED_GROUPS:
        std[lo:hi] = std[lo:hi] / feat_bias
    return mean.astype(np.float32), np.maximum(std, floor).astype(np.float32)


def feature_std(data: MotionSet) -> Tensor:
    """(263,) std of the RAW absolute-root features over the valid frames (the scale of ``with_noise``)."""
    from alm.motion.features import to_frames_major

    valid = torch.arange(data.x.shape[-1])[None, :] < data.lengths[:, None]
    return to_frames_major(data.x).double()[valid].std(dim=0).float()


def vocabulary(captions: Sequence[Sequence[str]]) -> list[str]:
    """sos, eos, unk, then the words of the captions' ``word/POS`` tokens, sorted."""
    words = {t.rpartition("/")[0] for caption in captions for t in caption} - set(SPECIAL_WORDS)
    return [*SPECIAL_WORDS, *sorted(words)]


def word_vectors(words: Sequence[str], dim: int, seed: int) -> np.ndarray:
    """(len(words), dim) float32 fixed random word vectors, N(0, 1) entries from (seed, ``WORD_STREAM``)."""
    from alm.rng import sample_seed

    g = torch.Generator().manual_seed(sample_seed(seed, 0, WORD_STREAM))
    return torch.randn(len(words), dim, generator=g).numpy().astype(np.float32)


# -- networks and loss -------------------------------------------------------------------------------------
def build_networks(args: argparse.Namespace):
    """(movement, text, motion) encoders of the sizes of ``args`` (initialised from ``args.seed``)."""
    from alm.motion.evaluator import CONTACT_FEATURES, DIM_POSE, MotionEncoder, MovementEncoder, TextEncoder
    from alm.motion.word_vectors import POS_CATEGORIES

    torch.manual_seed(args.seed)
    movement = MovementEncoder(DIM_POSE - CONTACT_FEATURES, args.movement_hidden, args.movement_latent)
    text = TextEncoder(args.word_dim, len(POS_CATEGORIES), args.text_hidden, args.dim)
    motion = MotionEncoder(args.movement_latent, args.motion_hidden, args.dim)
    return movement, text, motion


def motion_forward(ev, feats: Tensor, lengths: Tensor) -> Tensor:
    """``T2MEvaluator.motion_embeddings`` with gradients: normalised relative features (B, L, 263) -> (B, D)."""
    from alm.motion.evaluator import CONTACT_FEATURES

    movements = ev.movement_encoder(feats[..., :-CONTACT_FEATURES])
    return ev.motion_encoder(movements, lengths // ev.unit_length)


def contrastive_loss(text: Tensor, motion: Tensor, same: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, positive term, negative term): mean_i d(t_i, m_i)^2 + mean_{i != j, not same} max(0, margin -
    d(t_i, m_j))^2; ``same`` (B, B) bool marks pairs with the same caption (left out of the negatives)."""
    dist = torch.cdist(text, motion)
    pos = dist.diagonal().pow(2).mean()
    neg_mask = ~same & ~torch.eye(len(text), dtype=torch.bool)
    hinge = (margin - dist).clamp_min(0).pow(2)
    neg = hinge[neg_mask].mean() if bool(neg_mask.any()) else dist.new_zeros(())
    return pos + neg, pos, neg


def caption_codes(tokens: Sequence[Sequence[str]]) -> Tensor:
    """(N,) int64: one code per distinct token list, in order of first appearance."""
    ids: dict[tuple, int] = {}
    return torch.tensor([ids.setdefault(tuple(t), len(ids)) for t in tokens], dtype=torch.long)


def same_caption(tokens: Sequence[Sequence[str]]) -> Tensor:
    """(N, N) bool: captions i and j have the same tokens."""
    codes = caption_codes(tokens)
    return codes[:, None] == codes[None, :]


# -- training ----------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """A split as the evaluator reads it: normalised motions, lengths, caption inputs, caption identities."""

    feats: Tensor
    lengths: Tensor
    words: Tensor
    pos: Tensor
    cap_lens: Tensor
    codes: Tensor


def prepare(ev, data: MotionSet) -> Prepared:
    """The evaluator's inputs of ``data`` (the metrics' own conversions; captions ``padded``)."""
    from alm.metrics.motion import evaluator_input

    lengths = data.lengths
    feats = evaluator_input(data.x, lengths, ev.mean, ev.std, "algebraic", "zero")
    words, pos, cap_lens = ev.encode_captions(data.tokens, "padded")
    return Prepared(feats, lengths, words, pos, cap_lens, caption_codes(data.tokens))


def batch_loss(ev, p: Prepared, idx: Tensor, margin: float) -> tuple[Tensor, Tensor, Tensor]:
    text = ev.text_encoder(p.words[idx], p.pos[idx], p.cap_lens[idx])
    motion = motion_forward(ev, p.feats[idx], p.lengths[idx])
    same = p.codes[idx][:, None] == p.codes[idx][None, :]
    return contrastive_loss(text, motion, same, margin)


@torch.no_grad()
def validate(ev, p: Prepared, batch_size: int, margin: float) -> dict:
    """Mean loss over fixed consecutive batches and R-precision (groups of 32) of a prepared split."""
    from alm.motion import embedding_metrics as em

    ev.eval()
    n = len(p.lengths)
    losses = [batch_loss(ev, p, torch.arange(s, min(s + batch_size, n)), margin)[0].item()
              for s in range(0, n, batch_size) if min(s + batch_size, n) - s > 1]
    text = ev.text_embeddings(p.words, p.pos, p.cap_lens)
    motion = ev.motion_embeddings(p.feats, p.lengths)
    out = {"loss": float(np.mean(losses)), "matching": em.matching_score(text, motion)}
    if n >= GROUP:
        out["r_precision"] = [float(v) for v in em.r_precision(text, motion, GROUP, TOP_K)]
    return out


def train(args: argparse.Namespace, ev, train_p: Prepared, val_p: Prepared) -> dict:
    """Train ``ev``'s three networks in place; returns the kept epoch, the history and the time."""
    from tqdm.auto import tqdm

    from alm.rng import sample_seed

    params = [p for net in (ev.movement_encoder, ev.text_encoder, ev.motion_encoder) for p in net.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    n = len(train_p.lengths)
    steps_per_epoch = n // args.batch_size if n >= args.batch_size else 1
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    best: dict = {"loss": math.inf, "epoch": 0}
    history, step = [], 0
    t0 = time.monotonic()
    bar = tqdm(range(1, args.epochs + 1), desc="train motion evaluator", unit="epoch", disable=not args.progress)
    for epoch in bar:
        ev.train()
        g = torch.Generator().manual_seed(sample_seed(args.seed, epoch, ORDER_STREAM))
        perm = torch.randperm(n, generator=g)
        sums = np.zeros(3)
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            loss, pos, neg = batch_loss(ev, train_p, idx, args.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.5)
            opt.step()
            sched.step()
            step += 1
            sums += (loss.item(), pos.item(), neg.item())
        val = validate(ev, val_p, args.batch_size, args.margin)
        row = {"epoch": epoch, "train_loss": sums[0] / steps_per_epoch, "train_pos": sums[1] / steps_per_epoch,
               "train_neg": sums[2] / steps_per_epoch, **{f"val_{k}": v for k, v in val.items()}}
        history.append(row)
        if val["loss"] < best["loss"]:
            best = {"loss": val["loss"], "epoch": epoch, "iter": step,
                    "state": {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
                              for name, net in (("movement_encoder", ev.movement_encoder),
                                                ("text_encoder", ev.text_encoder),
                                                ("motion_encoder", ev.motion_encoder))}}
        top3 = val.get("r_precision", [math.nan] * TOP_K)[-1]
        bar.set_postfix(loss=f"{row['train_loss']:.2f}", val=f"{val['loss']:.2f}", top3=f"{top3:.3f}",
                        best=best["epoch"])
    ev.eval()
    return {"best": best, "history": history, "seconds": time.monotonic() - t0, "steps": step}


def write_folder(out: Path, best: dict, words: Sequence[str], vectors: np.ndarray, mean: np.ndarray,
                 std: np.ndarray) -> None:
    """The evaluator folder in the real layout (``alm.motion.evaluator.evaluator_files``)."""
    from alm import io
    from alm.motion.evaluator import GLOVE_DIR, evaluator_files
    from alm.motion.word_vectors import write_word_vectors

    files = evaluator_files(out)
    files["checkpoint"].parent.mkdir(parents=True, exist_ok=True)
    io.atomic_torch_save({**best["state"], "epoch": int(best["epoch"]), "iter": int(best["iter"])}, files["checkpoint"])
    write_word_vectors(out / GLOVE_DIR, words, vectors)
    files["mean"].parent.mkdir(parents=True, exist_ok=True)
    np.save(files["mean"], mean)
    np.save(files["std"], std)


# -- assessment --------------------------------------------------------------------------------------------
def static_pose(x: Tensor, lengths: Tensor) -> Tensor:
    """Every valid frame replaced by the motion's first frame (a held pose; 0 beyond the length)."""
    out = torch.zeros_like(x)
    for i, n in enumerate(lengths.tolist()):
        out[i, :, :, :n] = x[i, :, :, :1]
    return out


def linear_inbetween(x: Tensor, lengths: Tensor) -> Tensor:
    """The features linearly interpolated from the first to the last valid frame (a naive in-between)."""
    out = torch.zeros_like(x)
    for i, n in enumerate(lengths.tolist()):
        w = torch.linspace(0, 1, n, dtype=x.dtype)
        out[i, :, :, :n] = x[i, :, :, :1] * (1 - w) + x[i, :, :, n - 1:n] * w
    return out


def with_noise(x: Tensor, lengths: Tensor, scale: Tensor, sigma: float, seed: int) -> Tensor:
    """x + sigma * scale * N(0, 1) on the valid frames (``scale`` (263,): the data's feature stds)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype) * sigma * scale.view(1, -1, 1, 1).to(x.dtype)
    valid = (torch.arange(x.shape[-1])[None, :] < lengths[:, None]).view(len(x), 1, 1, -1)
    return x + noise * valid


@torch.no_grad()
def assess(folder: Path, test: MotionSet, others: dict[str, MotionSet], noise_scale: Tensor,
           noise_sigmas: Sequence[float] = (0.1, 0.3)) -> dict:
    """The test-split numbers of an evaluator folder, through the metric classes (``alm.metrics.motion``).

    Real test motions read as ground truth; every "generated" set (test motions themselves, corruptions) through
    the metrics' generated-motion path (``conversion: joints``). Returns a dict of floats / lists."""
    from alm.metrics.motion import MotionFID
    from alm.motion import embedding_metrics as em

    metric = MotionFID(folder=str(folder))
    metric.setup(torch.device("cpu"))
    text = metric.text_embeddings(test.metas)
    real = metric.motion_embeddings(test.x, test.metas, generated=False)
    g = torch.Generator().manual_seed(ASSESS_SEED)
    shuffle = torch.randperm(len(test), generator=g)
    out: dict = {
        "n": len(test),
        "r_precision": [float(v) for v in em.r_precision(text, real, GROUP, TOP_K)],
        "matching": em.matching_score(text, real),
        "r_precision_shuffled": [float(v) for v in em.r_precision(text[shuffle], real, GROUP, TOP_K)],
        "matching_shuffled": em.matching_score(text[shuffle], real),
        "diversity": em.diversity(real, DIVERSITY_PAIRS, 0) if len(test) > DIVERSITY_PAIRS else math.nan,
        "fid": {},
    }
    for name, data in others.items():
        emb = metric.motion_embeddings(data.x, data.metas, generated=False)
        out["fid"][f"real: {name}"] = em.fid(emb, real)
    lengths = test.lengths
    generated = {"real: test motions as outputs (joints conversion)": test.x,
                 **{f"noise {s:g} x feature std": with_noise(test.x, lengths, noise_scale, s, ASSESS_SEED + k)
                    for k, s in enumerate(noise_sigmas)},
                 "held first pose": static_pose(test.x, lengths),
                 "linear in-between of first and last frame": linear_inbetween(test.x, lengths)}
    out["generated"] = {}
    for name, x in generated.items():
        emb = metric.motion_embeddings(x, test.metas, generated=True)
        out["generated"][name] = {"fid": em.fid(emb, real), "matching": em.matching_score(text, emb),
                                  "r_precision": [float(v) for v in em.r_precision(text, emb, GROUP, TOP_K)]}
    return out


# -- the report --------------------------------------------------------------------------------------------
def training_md(args: argparse.Namespace, result: dict, report: dict, sizes: dict, n_params: dict,
                vocab: Sequence[str]) -> str:
    from alm.data.synthetic_motion import VERSION as data_version

    best, hist = result["best"], result["history"]
    r, rs = report["r_precision"], report["r_precision_shuffled"]
    lines = [
        "# The synthetic-motion T2M evaluator: text and motion encoders in one co-embedding space",
        "",
        "Trained by `scripts/train_motion_evaluator.py` (its docstring explains every choice) on the `train` split of",
        f"`dataset=synthetic_motion` ({sizes['train']:,} clips of 64 frames; the kept epoch is the one of lowest loss on",
        f"`val`, {sizes['val']:,} clips), assessed once on `test` ({sizes['test']:,} clips) through the metric classes.",
        "The folder has the layout of the real T2M evaluator, so `alm.motion.evaluator.load_evaluator` and the motion",
        "measures read it unchanged: `conf/metrics/motion-embedded.yaml` (FID, matching score, R-precision in groups of",
        "32, Diversity over 300 pairs, and the geometric measures, which need no network).",
        "",
        f"- data: `alm.data.synthetic_motion` VERSION {data_version} (default settings); retrain when it changes",
        f"- command: `{args.command}`",
        f"- trained {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC, {args.epochs} epochs "
        f"({result['steps']} steps of batch {args.batch_size}) in {result['seconds'] / 60:.1f} min on "
        f"{args.threads} CPU thread(s); seed {args.seed}",
        f"- networks ({sum(n_params.values()) / 1e3:.0f} K parameters): movement encoder 259 -> "
        f"{args.movement_hidden} -> {args.movement_latent} ({n_params['movement_encoder'] / 1e3:.0f} K), text encoder "
        f"BiGRU({args.text_hidden}) ({n_params['text_encoder'] / 1e3:.0f} K), motion encoder BiGRU({args.motion_hidden}) "
        f"({n_params['motion_encoder'] / 1e3:.0f} K); co-embeddings of size {args.dim}",
        f"- word vectors: {len(vocab)} words (the train captions' words + sos, eos, unk), fixed seeded random N(0, I) "
        f"vectors of size {args.word_dim} (not learned)",
        f"- statistics: relative features of the train split, std averaged per feature group, root and foot-contact "
        f"groups / {args.feat_bias:g} (HumanML3D / T2M recipe)",
        f"- loss: margin contrastive (margin {args.margin:g}) on euclidean distances, all mismatched pairs of a batch "
        f"with different captions as negatives; Adam lr {args.lr:g} (cosine), gradient norm clip 0.5",
        f"- kept epoch: {best['epoch']} (val loss {best['loss']:.4f})",
        "",
        f"## Test split ({report['n']} clips, R-precision in groups of {GROUP})",
        "",
        "| captions | R-precision top-1 | top-2 | top-3 | matching score |",
        "|---|---|---|---|---|",
        f"| their own | **{r[0]:.3f}** | **{r[1]:.3f}** | **{r[2]:.3f}** | {report['matching']:.3f} |",
        f"| shuffled (control) | {rs[0]:.3f} | {rs[1]:.3f} | {rs[2]:.3f} | {report['matching_shuffled']:.3f} |",
        f"| chance | {1 / GROUP:.3f} | {2 / GROUP:.3f} | {3 / GROUP:.3f} | |",
        "",
        f"Diversity of the real test motions ({DIVERSITY_PAIRS} pairs): {report['diversity']:.3f}.",
        "",
        "FID against the real test motions (their embeddings as the ground truth reads them):",
        "",
        "| motions | FID | matching score | R-precision top-3 |",
        "|---|---|---|---|",
        *[f"| {name} | {v:.3f} | | |" for name, v in report["fid"].items()],
        *[f"| {name} | {v['fid']:.3f} | {v['matching']:.3f} | {v['r_precision'][-1]:.3f} |"
          for name, v in report["generated"].items()],
        "",
        "(\"noise s x feature std\": Gaussian noise of s times each raw feature's std on the absolute-root features;",
        "\"held first pose\": the first frame repeated; \"linear in-between\": every feature interpolated linearly",
        "from the first to the last frame. Generated sets go through the metrics' joints conversion.)",
        "",
        "## Epochs",
        "",
        "| epoch | train loss | train pos | train neg | val loss | val matching | val R-precision top-3 |",
        "|---|---|---|---|---|---|---|",
        *[f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_pos']:.4f} | {h['train_neg']:.4f} | "
          f"{h['val_loss']:.4f} | {h['val_matching']:.3f} | "
          f"{h.get('val_r_precision', [math.nan] * TOP_K)[-1]:.3f} |" for h in hist],
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="weights/motion_evaluator", help="the evaluator folder (relative to the project)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--margin", type=float, default=10.0, help="the negative pairs' margin (Guo et al.: 10)")
    p.add_argument("--feat-bias", type=float, default=5.0, help="root and foot-contact stds divided by it")
    p.add_argument("--dim", type=int, default=32, help="co-embedding size")
    p.add_argument("--word-dim", type=int, default=32, help="word-vector size")
    p.add_argument("--text-hidden", type=int, default=64)
    p.add_argument("--motion-hidden", type=int, default=96)
    p.add_argument("--movement-hidden", type=int, default=64)
    p.add_argument("--movement-latent", type=int, default=64)
    p.add_argument("--train-items", type=int, default=0, help="first N train clips (0: all)")
    p.add_argument("--val-items", type=int, default=0, help="first N val clips (0: all)")
    p.add_argument("--test-items", type=int, default=0, help="first N test clips assessed (0: all; -1: no assessment)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["python", "scripts/train_motion_evaluator.py", *argv])
    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()
    out = out if out.is_absolute() else ROOT / out
    try:
        from alm import io
        from alm.motion.evaluator import T2MEvaluator, load_evaluator
        from alm.motion.word_vectors import WordVectors, write_word_vectors

        train_set, val_set = load_split("train", args.train_items), load_split("val", args.val_items)
        if len(train_set) < 2 or len(val_set) < 2:
            raise DataError("the evaluator needs at least 2 train and 2 val clips")
        mean, std = evaluator_statistics(relative_frames(train_set.x, train_set.lengths), train_set.lengths,
                                         args.feat_bias)
        vocab = vocabulary(train_set.tokens)
        vectors = word_vectors(vocab, args.word_dim, args.seed)
        movement, text, motion = build_networks(args)
        with tempfile.TemporaryDirectory() as tmp:  # the vocabulary read back through the metrics' own reader
            words = WordVectors(write_word_vectors(Path(tmp), vocab, vectors))
        ev = T2MEvaluator(movement, text, motion, words, torch.from_numpy(mean), torch.from_numpy(std))
        train_p, val_p = prepare(ev, train_set), prepare(ev, val_set)
        result = train(args, ev, train_p, val_p)
        write_folder(out, result["best"], vocab, vectors, mean, std)
        n_params = {name: sum(p.numel() for p in net.parameters()) for name, net in
                    (("movement_encoder", movement), ("text_encoder", text), ("motion_encoder", motion))}
        sizes = {"train": len(train_set), "val": len(val_set)}
        if args.test_items >= 0:
            test_set = load_split("test", args.test_items)
            sizes["test"] = len(test_set)
            load_evaluator(out)  # the folder loads as the metrics load it
            others = {"val split": val_set,
                      "train subset": MotionSet(train_set.x[:len(test_set)], train_set.metas[:len(test_set)])}
            report = assess(out, test_set, others, feature_std(train_set))
            io.atomic_write_bytes(out / "TRAINING.md",
                                  training_md(args, result, report, sizes, n_params, vocab).encode())
            r = report["r_precision"]
            print(f"test R-precision top-1/2/3 {r[0]:.3f} / {r[1]:.3f} / {r[2]:.3f}, matching {report['matching']:.3f}"
                  f" (shuffled captions: top-3 {report['r_precision_shuffled'][-1]:.3f})", flush=True)
    except ALMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    best = result["best"]
    print(f"kept epoch {best['epoch']}/{args.epochs} (val loss {best['loss']:.4f}) in {result['seconds'] / 60:.1f} min "
          f"-> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
