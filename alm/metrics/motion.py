"""Human-motion measures of the evaluation stage (``task=motion``; paper §4.2.3, HumanML3D).

Inputs are batches in data space: ``output`` / ``source`` (B, 263, 1, L) RAW absolute-root HumanML3D
features (CondMDI's representation, zero beyond each motion's length), ``mask`` (B, 1, 1, L) with 1 = a
generated frame, and metas with ``length`` (valid frames), ``caption`` and ``tokens`` (``word/POS``).

With the T2M evaluator (``alm.motion.evaluator``; its folder: ``folder``, see ``conf/metrics/motion.yaml``),
as GMD / CondMDI evaluate (CondMDI ``eval/eval_humanml_condmdi.py``; the formulas: ``alm.motion.embedding_metrics``):

=================  ===========================================================================================
``fid``            FID of the outputs' motion embeddings against the SOURCES' (set; lower is better)
``matching_score`` per sample d(text embedding of its caption, motion embedding of its output); mean (lower)
``r_precision``    top-3 R-precision of the outputs against their captions, in consecutive groups of 32 samples
                   in update order (= sample order in ``alm.evaluate``), the last incomplete group dropped (set;
                   higher is better); ``r_precision_top1`` / ``_top2`` as extra columns
``diversity``      mean distance of 300 seeded random pairs of output embeddings (set; best CLOSE TO THE REAL
                   motions' value, which is the extra column ``diversity_real``: not ranked, ``rank: false``)
=================  ===========================================================================================

Geometric, per sample, on joint positions (``alm.motion.features.recover_joints(x, "abs")``, metres, y up;
the measures: ``alm.motion.geometry``; the observed frames = mask 0 within the motion's length):

==================  ========================================================================================
``skating_ratio``   ``SkatingRatio``: share of frame pairs in which a foot slides on the ground, over the valid
                    frames (``all_frames: true``: the whole array, as CondMDI) (lower)
``traj_fail_20``    ``Trajectory(measure=traj_fail_20cm)``: 1 if the root's x/z misses any observed frame's by more
                    than 20 cm, else 0; mean (lower)
``traj_fail_50``    the same at 50 cm (CondMDI's "Traj. err"); ``kps_fail_20cm`` / ``kps_fail_50cm``: the share of
                    observed frames that miss (its "Loc. err", here a mean of per-motion shares)
``traj_error``      ``Trajectory(measure=mean_err)``: mean root x/z distance over the observed frames, metres
                    (CondMDI's "Avg. err"; lower; NaN without observed frames, left out of the mean)
``keyframe_error``  ``KeyframeError``: mean over the observed frames of the mean 3-D joint distance, metres (lower)
==================  ========================================================================================

How a motion reaches the evaluator (CondMDI ``motion_loaders/comp_v6_model_dataset_condmdi.py`` for the
generated motions, its ``'gt'`` loader for the ground truth; ``evaluator_input``):

1. converted to the relative-root representation. Outputs (``conversion``): ``joints`` (default) as CondMDI's
   ``abs3d_to_rel``: the joints of the absolute features, every relative feature re-extracted from them
   (``alm.motion.features.abs_to_rel_via_joints``); ``algebraic``: only the root features converted
   (``abs_to_rel``). Sources: always ``algebraic``, which gives back the HumanML3D relative features
   the absolute ones were made from: what the ground-truth loader reads (``new_joint_vecs``);
2. normalised with the evaluator's ``dataset/t2m_mean.npy`` / ``t2m_std.npy`` (both sets: their generated
   motions by ``mean_for_eval`` / ``std_for_eval``, their ground truth by the ``'gt'`` loader's mean/std: the
   same files);
3. frames beyond ``length`` are 0 in that normalised space, each motion's valid frames converted on their own.
   For the sources this is the ground-truth loader (normalised motions zero-padded). Their generated motions
   carry the sampler's own frames beyond the length (all 196 frames converted): ``beyond_length: keep`` does
   that for the outputs (only for outputs generated over all frames: zero padding has no pose); the
   default ``zero`` treats outputs like the sources, so whatever a run stores beyond the length cannot leak
   into the last movement (the movement encoder's last unit sees up to 3 frames past the length).

So an output equal to its source is not at FID 0 exactly: its features are re-extracted (as CondMDI's
would be), the source's are HumanML3D's own.

Captions (``caption_lengths``): ``padded`` (default) reads every caption over all 22 tokens, unk padding
included, as the generated-motion loader of MDM / GMD / CondMDI does (the numbers of the paper); ``true``
reads sos + words + eos as the HumanML3D ground-truth loader (and MDM since its issue #182).

Known differences to their evaluation (docs: ``conf/metrics/motion.yaml``): their FID statistics of the
ground truth are of the WHOLE test split (its ``'gt'`` loader, shuffled, random captions and crops), ours of
the run's sources (the same motions the outputs complete; a run of ~1,000 test motions as theirs); their
matching score also drops the incomplete last batch of 32. Replications (runs with other seeds) are summarised
with ``alm.motion.embedding_metrics.replication_statistics``.

``tiny_seed``: the folder holds a tiny random evaluator written by ``write_tiny_evaluator(folder, tiny_seed)``
when it is missing (``metrics=motion-smoke``: plumbing only, the values mean nothing).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from alm.errors import ConfigError, DataError
from alm.metrics.base import Metric, MissingWeightsError
from alm.motion import embedding_metrics as em

Tensor = torch.Tensor

CAPTION_LENGTHS = ("padded", "true")
BEYOND_LENGTH = ("zero", "keep")
CONVERSIONS = ("joints", "algebraic")


# -- data space -> evaluator input -------------------------------------------------------------------
def lengths_of(metas: Sequence[dict], frames: int) -> Tensor:
    """(B,) int64 valid lengths from the metas' ``length`` (a one-line ``DataError`` if one is missing or
    out of ``[1, frames]``)."""
    out = []
    for i, meta in enumerate(metas):
        n = (meta or {}).get("length")
        if n is None:
            raise DataError(f"motion sample {i} has no 'length' in its meta (valid frames)")
        n = int(n)
        if not 0 < n <= frames:
            raise DataError(f"motion sample {i}: length {n} outside [1, {frames}] frames")
        out.append(n)
    return torch.tensor(out, dtype=torch.long)


def tokens_of(metas: Sequence[dict]) -> list[list[str]]:
    """The ``word/POS`` tokens of every sample's caption (a one-line ``DataError`` if one has none)."""
    out = []
    for i, meta in enumerate(metas):
        toks = (meta or {}).get("tokens")
        if toks is None or isinstance(toks, str) or len(toks) == 0:
            raise DataError(f"motion sample {i} has no caption 'tokens' (word/POS strings) in its meta")
        out.append([str(t) for t in toks])
    return out


def evaluator_input(x: Tensor, lengths: Tensor, mean: Tensor, std: Tensor, conversion: str = "joints",
                    beyond_length: str = "zero") -> Tensor:
    """Data-space motions (B, 263, 1, L) -> the evaluator's input (B, L, 263): relative-root features
    normalised with (mean, std).

    ``conversion="joints"``: CondMDI's ``abs3d_to_rel`` (``alm.motion.features.abs_to_rel_via_joints``: the
    joints, every feature re-extracted); ``"algebraic"``: features 0..2 converted, the rest kept
    (``abs_to_rel``: gives back the HumanML3D relative files the absolute ones were made from).
    ``beyond_length="zero"``: each motion's valid frames converted on their own, 0 beyond them (normalised
    space); ``"keep"``: all L frames converted and kept."""
    from alm.motion.features import abs_to_rel, abs_to_rel_via_joints, to_frames_major

    if conversion not in CONVERSIONS:
        raise ConfigError(f"conversion={conversion!r}: choose one of {', '.join(CONVERSIONS)}")
    if beyond_length not in BEYOND_LENGTH:
        raise ConfigError(f"beyond_length={beyond_length!r}: choose one of {', '.join(BEYOND_LENGTH)}")
    convert = abs_to_rel_via_joints if conversion == "joints" else abs_to_rel
    frames = to_frames_major(x).double()  # (B, L, 263)
    rel = convert(frames) if beyond_length == "keep" else convert(frames, lengths.tolist())
    out = (rel - mean.to(rel)) / std.to(rel)
    if beyond_length == "zero":
        keep = torch.arange(out.shape[1], device=out.device)[None, :] < lengths.to(out.device)[:, None]
        out = out * keep[..., None]
    if not torch.isfinite(out).all():
        bad = sorted({int(b) for b in torch.nonzero(~torch.isfinite(out))[:, 0].tolist()})
        raise DataError(f"motions {bad} of the batch give non-finite evaluator input (conversion={conversion}, "
                        f"beyond_length={beyond_length}: a degenerate pose, or zero padding converted with 'keep')")
    return out.float()


# -- the shared evaluator and its embeddings ---------------------------------------------------------
_EVALUATORS: dict = {}
_MEMO: "OrderedDict[tuple, Tensor]" = OrderedDict()
_MEMO_SIZE = 16


def shared_evaluator(folder: Path, device: torch.device):
    """One loaded evaluator per (folder, checkpoint file state, device), shared by the metrics of a set."""
    from alm.motion.evaluator import evaluator_files, load_evaluator

    ckpt = evaluator_files(folder)["checkpoint"]
    stat = ckpt.stat()
    key = (str(Path(folder).expanduser().resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    if key not in _EVALUATORS:
        _EVALUATORS.clear()
        _MEMO.clear()
        _EVALUATORS[key] = load_evaluator(folder, device)
    return _EVALUATORS[key]


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, Tensor):
            h.update(str((p.dtype, tuple(p.shape))).encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def _memo(key: tuple, make) -> Tensor:
    """The embeddings of ``key`` computed once while the same batch is passed to several metrics."""
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    value = make()
    _MEMO[key] = value
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return value


class _T2MMetric(Metric):
    """A measure on T2M-evaluator embeddings: loads the evaluator, embeds motions and captions."""

    regions = ("full",)
    title = "T2M"

    def __init__(self, folder: str, caption_lengths: str = "padded", conversion: str = "joints",
                 beyond_length: str = "zero", tiny_seed: Optional[int] = None, region: str = "full") -> None:
        super().__init__(region)
        for name, value, choices in (("caption_lengths", caption_lengths, CAPTION_LENGTHS),
                                     ("conversion", conversion, CONVERSIONS),
                                     ("beyond_length", beyond_length, BEYOND_LENGTH)):
            if value not in choices:
                raise ConfigError(f"{type(self).__name__}: {name}={value!r} (choose one of {', '.join(choices)})")
        self.folder = Path(str(folder)).expanduser()
        self.caption_lengths, self.conversion, self.beyond_length = caption_lengths, conversion, beyond_length
        self.tiny_seed = None if tiny_seed is None else int(tiny_seed)
        self.evaluator = None

    def check_available(self) -> None:
        from alm.motion.evaluator import HOW_TO_GET, missing_files, write_tiny_evaluator

        missing = missing_files(self.folder)
        if missing and self.tiny_seed is not None:
            write_tiny_evaluator(self.folder, self.tiny_seed)
            missing = missing_files(self.folder)
        if missing:
            raise MissingWeightsError(f"{self.title} needs the T2M evaluator's {', '.join(str(p) for p in missing)} "
                                      f"(missing); get them {HOW_TO_GET}")

    def setup(self, device) -> None:
        super().setup(device)
        self.check_available()
        self.evaluator = shared_evaluator(self.folder, self.device)

    def _ensure(self):
        if self.evaluator is None:
            self.setup(self.device)
        return self.evaluator

    def motion_embeddings(self, x: Tensor, metas: Sequence[dict], generated: bool = True) -> Tensor:
        """(B, D) float64 CPU motion embeddings of data-space motions (B, 263, 1, L), in batch order: outputs
        (``generated``) with the metric's ``conversion`` / ``beyond_length``, sources (the ground truth) as the
        ground-truth loader reads them (``algebraic``, ``zero``)."""
        ev = self._ensure()
        if x.dim() != 4 or x.shape[1] != ev.mean.numel() or x.shape[2] != 1:
            raise DataError(f"{self.title}: motions of shape {tuple(x.shape)} (expected (B, {ev.mean.numel()}, 1, L))")
        lengths = lengths_of(metas, x.shape[-1])
        how = (self.conversion, self.beyond_length) if generated else ("algebraic", "zero")

        def make() -> Tensor:
            feats = evaluator_input(x.to(ev.device), lengths, ev.mean, ev.std, *how)
            return ev.motion_embeddings(feats, lengths).double().cpu()

        return _memo(("motion", id(ev), how, _digest(x.float(), lengths)), make)

    def text_embeddings(self, metas: Sequence[dict]) -> Tensor:
        """(B, D) float64 CPU text embeddings of the samples' captions, in batch order."""
        ev = self._ensure()
        tokens = tokens_of(metas)

        def make() -> Tensor:
            words, pos, n = ev.encode_captions(tokens, self.caption_lengths)
            return ev.text_embeddings(words, pos, n).double().cpu()

        return _memo(("text", id(ev), self.caption_lengths, _digest(tokens)), make)


# -- the embedding measures --------------------------------------------------------------------------
class _EmbeddingSets(_T2MMetric):
    """A set metric over the motion embeddings of the outputs (``_gen``) and of their sources (``_real``)."""

    per_sample = False

    def __init__(self, folder: str, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        self._gen: list[Tensor] = []
        self._real: list[Tensor] = []

    @torch.no_grad()
    def update(self, output, source, mask, labels=None, metas=None) -> None:
        metas = list(metas) if metas is not None else [{} for _ in range(output.shape[0])]
        self._gen.append(self.motion_embeddings(output, metas))
        self._real.append(self.motion_embeddings(source, metas, generated=False))
        self._count += output.shape[0]
        return None

    def reset(self) -> None:
        super().reset()
        self._gen, self._real = [], []


class MotionFID(_EmbeddingSets):
    """FID between the outputs' and the sources' motion embeddings (``embedding_metrics.fid``)."""

    higher_is_better = False
    title = "FID (T2M)"

    def compute(self) -> float:
        if not self._gen:
            return float("nan")
        return em.fid(torch.cat(self._gen), torch.cat(self._real))


class MatchingScore(_T2MMetric):
    """Per sample: euclidean distance between its caption's and its output's embeddings (lower is better)."""

    higher_is_better = False
    title = "Matching score (T2M)"

    def values(self, output, source, mask, labels, metas) -> Tensor:
        text = self.text_embeddings(metas)
        motion = self.motion_embeddings(output, metas)
        return torch.from_numpy(em.matching_distances(text, motion))


class RPrecision(_T2MMetric):
    """R-precision top-``top_k`` in groups of ``group`` consecutive samples; top-1 .. top-(k-1) as extra columns."""

    higher_is_better = True
    per_sample = False
    title = "R-precision (T2M)"

    def __init__(self, folder: str, top_k: int = 3, group: int = 32, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        self.top_k, self.group = int(top_k), int(group)
        if self.top_k < 1 or self.group < 2:
            raise ConfigError(f"RPrecision: top_k={top_k} must be >= 1 and group={group} >= 2")
        self._text: list[Tensor] = []
        self._motion: list[Tensor] = []
        self._values: Optional[np.ndarray] = None

    @torch.no_grad()
    def update(self, output, source, mask, labels=None, metas=None) -> None:
        metas = list(metas) if metas is not None else [{} for _ in range(output.shape[0])]
        self._text.append(self.text_embeddings(metas))
        self._motion.append(self.motion_embeddings(output, metas))
        self._count += output.shape[0]
        self._values = None
        return None

    def _all(self) -> np.ndarray:
        if self._count < self.group:
            raise DataError(f"{self.title}: {self._count} samples, fewer than one group of {self.group}; evaluate more "
                            f"samples or set the metric's group lower")
        if self._values is None:
            self._values = em.r_precision(torch.cat(self._text), torch.cat(self._motion), self.group, self.top_k)
        return self._values

    def compute(self) -> float:
        return float(self._all()[-1]) if self._text else float("nan")

    def compute_extra(self) -> dict[str, float]:
        if not self._text:
            return {}
        return {f"top{k + 1}": float(v) for k, v in enumerate(self._all()[:-1])}

    def reset(self) -> None:
        super().reset()
        self._text, self._motion, self._values = [], [], None


class Diversity(_EmbeddingSets):
    """Mean distance of ``times`` seeded random pairs of output embeddings; the sources' value as ``real``."""

    # The paper's Rank columns (Tables 4, 7) rank Diversity higher-is-better: the project's rank rule reproduces
    # them only so (tests/test_replications.py). Real motions score higher than every completion there, so
    # "higher" is also "closer to real"; ``diversity_real`` (the sources' value) stands beside it to check that.
    higher_is_better = True
    title = "Diversity (T2M)"

    def __init__(self, folder: str, times: int = 300, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        self.times, self.seed = int(times), int(seed)

    def compute(self) -> float:
        if not self._gen:
            return float("nan")
        if self._count <= self.times:
            raise DataError(f"{self.title}: {self._count} samples, but {self.times} pairs of distinct draws need more "
                            f"than {self.times}; evaluate more samples or set the metric's times lower")
        return em.diversity(torch.cat(self._gen), self.times, self.seed)

    def compute_extra(self) -> dict[str, float]:
        return {"real": em.diversity(torch.cat(self._real), self.times, self.seed)} if self._real else {}


# -- the geometric measures --------------------------------------------------------------------------
def joints_of(x: Tensor) -> Tensor:
    """Data-space motions (B, 263, 1, L) -> joint positions (B, L, 22, 3), metres (float64)."""
    from alm.motion.features import recover_joints, to_frames_major

    return recover_joints(to_frames_major(x).double(), "abs")


class _JointsMetric(Metric):
    """A per-sample measure on the joint positions of the outputs (and of the sources: the targets)."""

    regions = ("full",)
    higher_is_better = False


class SkatingRatio(_JointsMetric):
    """Share of frame pairs in which a foot slides on the ground (``alm.motion.geometry.skating_ratio``), over
    each output's valid frames; ``all_frames: true`` counts the whole array as CondMDI does (its samples
    are generated over all 196 frames; a run that stores zeros beyond the length would skate there)."""

    title = "Skating ratio"

    def __init__(self, all_frames: bool = False, region: str = "full") -> None:
        super().__init__(region)
        self.all_frames = bool(all_frames)

    def values(self, output, source, mask, labels, metas) -> Tensor:
        from alm.motion.geometry import skating_ratio

        lengths = None if self.all_frames else lengths_of(metas, output.shape[-1]).tolist()
        return skating_ratio(joints_of(output), lengths)


TRAJECTORY_MEASURES = ("traj_fail_20cm", "traj_fail_50cm", "kps_fail_20cm", "kps_fail_50cm", "mean_err")
TRAJECTORY_TITLES = {"traj_fail_20cm": "Trajectory failure (20 cm)", "traj_fail_50cm": "Trajectory failure (50 cm)",
                     "kps_fail_20cm": "Keyframe location failures (20 cm)",
                     "kps_fail_50cm": "Keyframe location failures (50 cm)", "mean_err": "Trajectory error (m)"}


class Trajectory(_JointsMetric):
    """A root-trajectory measure at the observed frames (mask 0 within the length) against the source's root
    (``alm.motion.geometry.trajectory_error``): ``measure`` one of ``TRAJECTORY_MEASURES`` (``traj_fail_*``:
    1 if any observed frame misses by more than 20 / 50 cm; ``kps_fail_*``: the share of observed frames
    that do; ``mean_err``: the mean distance, metres, NaN without observed frames)."""

    def __init__(self, measure: str = "mean_err", region: str = "full") -> None:
        super().__init__(region)
        if measure not in TRAJECTORY_MEASURES:
            raise ConfigError(f"Trajectory: measure={measure!r} (choose one of {', '.join(TRAJECTORY_MEASURES)})")
        self.measure = measure
        self.title = TRAJECTORY_TITLES[measure]

    def values(self, output, source, mask, labels, metas) -> Tensor:
        from alm.motion.geometry import observed_from_frame_mask, trajectory_error

        lengths = lengths_of(metas, output.shape[-1]).tolist()
        out = trajectory_error(joints_of(output), joints_of(source), observed_from_frame_mask(mask), lengths)
        return out[self.measure]


class KeyframeError(_JointsMetric):
    """Mean over the observed frames of the mean 3-D joint error to the source, metres
    (``alm.motion.geometry.keyframe_error``; NaN without observed frames)."""

    title = "Keyframe error (m)"

    def values(self, output, source, mask, labels, metas) -> Tensor:
        from alm.motion.geometry import keyframe_error, observed_from_frame_mask

        lengths = lengths_of(metas, output.shape[-1]).tolist()
        return keyframe_error(joints_of(output), joints_of(source), observed_from_frame_mask(mask), lengths)
