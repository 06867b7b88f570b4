"""The T2M evaluator of Guo et al. (2022): text and motion embeddings in one co-embedding space.

Three networks, loaded by their exact parameter names from ``t2m/text_mot_match/model/finest.tar`` (keys
``movement_encoder``, ``text_encoder``, ``motion_encoder``; CondMDI ``networks/evaluator_wrapper.py``,
``build_evaluators``; the layers: ``networks/modules.py``):

==================  =======================================================================================
movement encoder    ``main``: Conv1d(263 - 4 -> 512, k 4, s 2, p 1), Dropout, LeakyReLU(0.2), Conv1d(512 -> 512,
                    k 4, s 2, p 1), Dropout, LeakyReLU(0.2); ``out_net``: Linear(512 -> 512). (B, T, 259) ->
                    (B, T / 4, 512): one "movement" per ``unit_length`` = 4 frames (``MovementConvEncoder``)
text encoder        ``pos_emb`` Linear(15 -> 300) added to the word vectors, ``input_emb`` Linear(300 -> 512), a
                    bidirectional GRU(512) from the learned state ``hidden`` (2, 1, 512), the two last states
                    concatenated -> ``output_net``: Linear(1024 -> 512), LayerNorm, LeakyReLU(0.2), Linear(512 ->
                    512) (``TextEncoderBiGRUCo``)
motion encoder      ``input_emb`` Linear(512 -> 1024), a bidirectional GRU(1024) from ``hidden`` (2, 1, 1024) over
                    the first ``length // 4`` movements, ``output_net``: Linear(2048 -> 1024), LayerNorm,
                    LeakyReLU(0.2), Linear(1024 -> 512) (``MotionEncoderBiGRUCo``)
==================  =======================================================================================

21.7 M parameters in all. The dimensions are read from the checkpoint's shapes, so a small random evaluator
with the same names (``write_tiny_evaluator``, for tests and smoke tables) loads the same way.

Input conventions (CondMDI ``EvaluatorMDMWrapper.get_co_embeddings``):

- motions are HumanML3D features in the RELATIVE-root representation, normalised with the evaluator's
  statistics ``(x - t2m_mean) / t2m_std`` (``normalise``), frames-major (B, T, 263); the last 4 features
  (foot contacts) are dropped before the movement encoder; ``length // unit_length`` movements are read;
- the wrapper sorts a batch by motion length, longest first (``np.argsort(m_lens)[::-1]``), embeds the
  motions in that order and permutes the text embeddings the same way; its text encoder packs the caption
  sequences, so its loader sorted the batch by caption length first (``collate_fn``: ``sent_len``, longest
  first). Here each encoder sorts its own input that way internally and the embeddings come back in the
  CALLER'S ORIGINAL ORDER (row i = input i). Every row is a function of its own input alone (eval mode), so
  this is the wrapper's result up to the order of the rows; the metrics of a batch (matching score,
  R-precision) do not depend on that order.

The evaluator folder (``evaluator_files``) has the layout of a MDM / GMD / CondMDI checkout after its
``prepare/download_t2m_evaluators.sh`` and ``prepare/download_glove.sh``::

    <folder>/t2m/text_mot_match/model/finest.tar
    <folder>/glove/our_vab_data.npy, our_vab_words.pkl, our_vab_idx.pkl
    <folder>/dataset/t2m_mean.npy, t2m_std.npy

``dataset/t2m_mean.npy`` / ``t2m_std.npy`` are the statistics CondMDI normalises BOTH sets with before the
evaluator: the ground-truth loader (``hml_mode='gt'``: ``self.mean = t2m_mean.npy``) and the generated motions
(``mean_for_eval`` / ``std_for_eval``, the same files) (CondMDI ``data/dataset.py``, ``HumanML3D.__init__``;
its ``meta_dir`` is ``resources/dataset``, the repository's ``dataset/`` in MDM). They come with the
repositories (MDM: ``dataset/t2m_mean.npy``), not with the evaluator download.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from alm.errors import CheckpointError, DataError
from alm.motion.word_vectors import GLOVE_FILES, MAX_TEXT_LEN, POS_CATEGORIES, WordVectors, write_word_vectors

Tensor = torch.Tensor

DIM_POSE = 263          # HumanML3D features (CondMDI ``EvaluatorMDMWrapper``: dim_pose)
CONTACT_FEATURES = 4    # the last 4 features (foot contacts) are not read by the movement encoder
UNIT_LENGTH = 4         # frames per movement (``unit_length``)

CHECKPOINT = Path("t2m/text_mot_match/model/finest.tar")
GLOVE_DIR = Path("glove")
MEAN, STD = Path("dataset/t2m_mean.npy"), Path("dataset/t2m_std.npy")
HOW_TO_GET = ("from a MDM / GMD / CondMDI checkout: bash prepare/download_t2m_evaluators.sh (t2m/) and bash "
              "prepare/download_glove.sh (glove/), and dataset/t2m_mean.npy, dataset/t2m_std.npy of the repository "
              "(github.com/GuyTevet/motion-diffusion-model); or set ALM_T2M_EVALUATOR to such a folder")


def evaluator_files(folder: Union[str, Path]) -> dict[str, Path]:
    """The files of an evaluator folder (see the module docstring), by role."""
    folder = Path(folder).expanduser()
    files = {"checkpoint": folder / CHECKPOINT, "mean": folder / MEAN, "std": folder / STD}
    files.update({f"glove_{name.split('_')[-1].split('.')[0]}": folder / GLOVE_DIR / name for name in GLOVE_FILES})
    return files


def missing_files(folder: Union[str, Path]) -> list[Path]:
    """The files of ``evaluator_files`` that are not on disk."""
    return [p for p in evaluator_files(folder).values() if not p.is_file()]


# -- the networks ------------------------------------------------------------------------------------
class MovementEncoder(nn.Module):
    """(B, T, dim_pose - 4) features -> (B, T / 4, latent) movements: two stride-2 convolutions + a linear map."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        # (CondMDI ``modules.py``, ``MovementConvEncoder``: the dropouts are identities in eval mode)
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1), nn.Dropout(0.2), nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_net(self.main(x.transpose(1, 2)).transpose(1, 2))


def _bigru_last(gru: nn.GRU, hidden: Tensor, x: Tensor, lengths: Tensor) -> Tensor:
    """The two last states of a bidirectional GRU over the first ``lengths`` steps of each row, concatenated
    (forward, backward): (B, 2 H). Rows are packed longest first and the result is put back in input order."""
    order = torch.sort(lengths.cpu(), descending=True, stable=True).indices
    packed = pack_padded_sequence(x[order.to(x.device)], lengths.cpu()[order], batch_first=True)
    _, last = gru(packed, hidden.repeat(1, x.shape[0], 1))
    out = torch.cat([last[0], last[1]], dim=-1)
    return out[torch.argsort(order).to(out.device)]


class _CoEncoder(nn.Module):
    """The shared head of the text and motion encoders: ``input_emb`` -> bidirectional GRU -> ``output_net``."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = nn.Sequential(nn.Linear(hidden_size * 2, hidden_size), nn.LayerNorm(hidden_size),
                                        nn.LeakyReLU(0.2), nn.Linear(hidden_size, output_size))
        self.hidden = nn.Parameter(torch.zeros(2, 1, hidden_size))

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.output_net(_bigru_last(self.gru, self.hidden, self.input_emb(x), lengths))


class TextEncoder(_CoEncoder):
    """Word vectors (B, S, dim_word) + POS one-hots (B, S, 15) + sentence lengths (B,) -> (B, D)
    (CondMDI ``modules.py``, ``TextEncoderBiGRUCo``)."""

    def __init__(self, word_size: int, pos_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__(word_size, hidden_size, output_size)
        self.pos_emb = nn.Linear(pos_size, word_size)

    def forward(self, word_embs: Tensor, pos_onehot: Tensor, lengths: Tensor) -> Tensor:
        return self.encode(word_embs + self.pos_emb(pos_onehot), lengths)


class MotionEncoder(_CoEncoder):
    """Movements (B, T / 4, latent) + movement counts (B,) -> (B, D) (CondMDI ``MotionEncoderBiGRUCo``)."""

    def forward(self, movements: Tensor, lengths: Tensor) -> Tensor:
        return self.encode(movements, lengths)


# -- the evaluator -----------------------------------------------------------------------------------
class T2MEvaluator(nn.Module):
    """The three networks, the GloVe vocabulary and the evaluator's normalisation (``load_evaluator``)."""

    def __init__(self, movement_encoder: MovementEncoder, text_encoder: TextEncoder, motion_encoder: MotionEncoder,
                 words: WordVectors, mean: Tensor, std: Tensor, unit_length: int = UNIT_LENGTH,
                 max_text_len: int = MAX_TEXT_LEN) -> None:
        super().__init__()
        self.movement_encoder, self.text_encoder, self.motion_encoder = movement_encoder, text_encoder, motion_encoder
        self.words = words
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.unit_length, self.max_text_len = int(unit_length), int(max_text_len)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dim(self) -> int:
        """Size of the co-embeddings."""
        return int(self.text_encoder.output_net[-1].out_features)

    def normalise(self, rel: Tensor) -> Tensor:
        """Raw relative-root features (..., T, 263) -> the evaluator's input ``(x - mean) / std``."""
        return (rel.to(self.mean) - self.mean) / self.std

    @torch.no_grad()
    def motion_embeddings(self, motions: Tensor, lengths: Union[Tensor, Sequence[int]]) -> Tensor:
        """Normalised relative features (B, T, 263) and valid lengths (B,) -> (B, D) in the input order.

        ``length // unit_length`` movements of each motion are read (at least one: a length below
        ``unit_length`` is a one-line ``DataError``)."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
        if motions.dim() != 3 or motions.shape[-1] != self.mean.shape[-1] or motions.shape[0] != lengths.numel():
            raise DataError(f"T2M evaluator: motions of shape {tuple(motions.shape)} with {lengths.numel()} lengths "
                            f"(expected (B, T, {self.mean.shape[-1]}) and B lengths)")
        units = lengths // self.unit_length
        if bool((units < 1).any()) or bool((lengths > motions.shape[1]).any()):
            raise DataError(f"T2M evaluator: motion lengths {lengths.tolist()} must lie in [{self.unit_length}, "
                            f"{motions.shape[1]}] frames")
        x = motions.to(self.device).float()[..., : -CONTACT_FEATURES]
        movements = self.movement_encoder(x)
        return self.motion_encoder(movements, units)

    @torch.no_grad()
    def text_embeddings(self, word_embs: Tensor, pos_onehot: Tensor, lengths: Union[Tensor, Sequence[int]]) -> Tensor:
        """Word vectors (B, S, dim_word), POS one-hots (B, S, 15), token counts (B,) -> (B, D) in the input order."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1).cpu()
        if bool((lengths < 1).any()) or bool((lengths > word_embs.shape[1]).any()):
            raise DataError(f"T2M evaluator: caption lengths {lengths.tolist()} must lie in [1, {word_embs.shape[1]}]")
        return self.text_encoder(word_embs.to(self.device).float(), pos_onehot.to(self.device).float(), lengths)

    def encode_captions(self, captions: Sequence[Sequence[str]], lengths: str = "padded"
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """Token lists -> (word vectors, POS one-hots, token counts) for ``text_embeddings``.

        ``lengths="true"``: each caption's own length (sos + words + eos; the HumanML3D ground-truth loader);
        ``"padded"``: every caption read over all ``max_text_len + 2`` tokens, the unk padding included. The
        latter is what the generated-motion loader of MDM / GMD / CondMDI feeds the evaluator
        (``comp_v6_model_dataset_condmdi.py``: ``'cap_len': len(tokens[bs_i])`` of the padded tokens; fixed in
        MDM after its issue #182, kept in the CondMDI code the paper's numbers come from)."""
        if lengths not in ("padded", "true"):
            raise DataError(f"caption lengths {lengths!r}: choose 'padded' or 'true'")
        words, pos, n = self.words.batch(captions, self.max_text_len)
        if lengths == "padded":
            n = torch.full_like(n, words.shape[1])
        return words, pos, n


def _shape(state: dict, key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"T2M evaluator checkpoint: {what} has no parameter {key!r}")
    return tuple(state[key].shape)


def build_networks(checkpoint: dict) -> tuple[MovementEncoder, TextEncoder, MotionEncoder]:
    """The three networks with the dimensions of ``checkpoint``'s tensors, their weights loaded strictly."""
    for key in ("movement_encoder", "text_encoder", "motion_encoder"):
        if not isinstance(checkpoint.get(key), dict):
            raise CheckpointError(f"T2M evaluator checkpoint: no {key!r} state dict "
                                  f"(keys: {', '.join(map(str, checkpoint))})")
    mov, txt, mot = checkpoint["movement_encoder"], checkpoint["text_encoder"], checkpoint["motion_encoder"]
    hidden, pose = _shape(mov, "main.0.weight", "movement_encoder")[:2]
    latent = _shape(mov, "main.3.weight", "movement_encoder")[0]
    word, pos = _shape(txt, "pos_emb.weight", "text_encoder")
    text_hidden = _shape(txt, "input_emb.weight", "text_encoder")[0]
    out = _shape(txt, "output_net.3.weight", "text_encoder")[0]
    motion_hidden = _shape(mot, "input_emb.weight", "motion_encoder")[0]
    if pos != len(POS_CATEGORIES) or pose != DIM_POSE - CONTACT_FEATURES:
        raise CheckpointError(f"T2M evaluator checkpoint: {pose} pose features and {pos} POS categories "
                              f"(expected {DIM_POSE - CONTACT_FEATURES} and {len(POS_CATEGORIES)}: HumanML3D)")
    nets = (MovementEncoder(pose, hidden, latent), TextEncoder(word, pos, text_hidden, out),
            MotionEncoder(latent, motion_hidden, out))
    for net, state, key in zip(nets, (mov, txt, mot), ("movement_encoder", "text_encoder", "motion_encoder")):
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise CheckpointError(f"T2M evaluator checkpoint: {key} does not fit "
                                  f"({' '.join(first[:2])[:200]})") from None
    return nets


def load_evaluator(folder: Union[str, Path], device: Union[str, torch.device] = "cpu") -> T2MEvaluator:
    """The evaluator of ``folder`` (``evaluator_files``) on ``device``, in eval mode, gradients off."""
    from alm.metrics.base import MissingWeightsError

    folder = Path(folder).expanduser()
    missing = missing_files(folder)
    if missing:
        raise MissingWeightsError(f"T2M evaluator: {', '.join(str(p) for p in missing)} missing; get them {HOW_TO_GET}")
    files = evaluator_files(folder)
    try:
        try:
            checkpoint = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # more than tensors pickled: the original loader's full load (torch.load)
            checkpoint = torch.load(files["checkpoint"], map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: one line naming it
        raise CheckpointError(f"T2M evaluator: cannot read {files['checkpoint']} "
                              f"({(str(err).strip().splitlines() or [type(err).__name__])[0][:160]})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"T2M evaluator: {files['checkpoint']} is not a checkpoint dict")
    movement, text, motion = build_networks(checkpoint)
    words = WordVectors(folder / GLOVE_DIR)
    if words.dim != text.pos_emb.out_features:
        raise CheckpointError(f"T2M evaluator: GloVe vectors of size {words.dim} but the text encoder reads "
                              f"{text.pos_emb.out_features}")
    mean, std = (torch.from_numpy(np.load(files[k]).astype(np.float32)).reshape(-1) for k in ("mean", "std"))
    if mean.numel() != DIM_POSE or std.numel() != DIM_POSE:
        raise CheckpointError(f"T2M evaluator: {files['mean']} / {files['std']} hold {mean.numel()} / {std.numel()} "
                              f"values (expected {DIM_POSE})")
    ev = T2MEvaluator(movement, text, motion, words, mean, std)
    return ev.to(device).eval().requires_grad_(False)


def num_parameters(evaluator: T2MEvaluator) -> int:
    """Parameters of the three networks (21,690,560 for the real evaluator)."""
    return sum(p.numel() for n in (evaluator.movement_encoder, evaluator.text_encoder, evaluator.motion_encoder)
               for p in n.parameters())


# -- a tiny random evaluator (tests, smoke tables) ----------------------------------------------------------
TINY_WORDS = ("sos", "eos", "unk", "a", "the", "person", "man", "woman", "someone", "figure", "walk", "run", "jump",
              "turn", "sit", "stand", "wave", "kick", "raise", "step", "forward", "backward", "left", "right", "up",
              "down", "around", "and", "then", "with", "his", "her", "hand", "arm", "leg", "foot", "slowly",
              "quickly", "in", "circle", "on", "to", "chair")


def write_tiny_evaluator(folder: Union[str, Path], seed: int = 0, dim: int = 8, hidden: int = 16,
                         word_dim: int = 8) -> Path:
    """Write a small random evaluator in the real layout (``evaluator_files``) to ``folder``: the same parameter
    names with small sizes (co-embeddings of ``dim``), a GloVe vocabulary of ``TINY_WORDS`` (``word_dim``) and
    normalisation statistics. Deterministic in ``seed``; returns the folder."""
    folder = Path(folder).expanduser()
    gen = torch.Generator().manual_seed(int(seed))
    torch_state = torch.random.get_rng_state()
    try:  # nn.Module initialisation draws from the global generator: seed it, then restore it
        torch.manual_seed(int(seed))
        nets = (MovementEncoder(DIM_POSE - CONTACT_FEATURES, hidden, hidden),
                TextEncoder(word_dim, len(POS_CATEGORIES), hidden, dim), MotionEncoder(hidden, hidden, dim))
    finally:
        torch.random.set_rng_state(torch_state)
    for net in nets:
        for p in net.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(p.shape[-1], 1)))
    files = evaluator_files(folder)
    files["checkpoint"].parent.mkdir(parents=True, exist_ok=True)
    state = {"movement_encoder": nets[0].state_dict(), "text_encoder": nets[1].state_dict(),
             "motion_encoder": nets[2].state_dict(), "epoch": 0}
    torch.save(state, files["checkpoint"])
    vectors = torch.randn(len(TINY_WORDS), word_dim, generator=gen).numpy()
    write_word_vectors(folder / GLOVE_DIR, TINY_WORDS, vectors)
    files["mean"].parent.mkdir(parents=True, exist_ok=True)
    np.save(files["mean"], (0.1 * torch.randn(DIM_POSE, generator=gen)).numpy().astype(np.float32))
    np.save(files["std"], (0.5 + torch.rand(DIM_POSE, generator=gen)).numpy().astype(np.float32))
    return folder
