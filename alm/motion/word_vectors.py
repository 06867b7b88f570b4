"""Captions -> the T2M evaluator's text input: GloVe word vectors, part-of-speech one-hots, sentence lengths.

The T2M evaluator of Guo et al. (2022) reads a caption as the pre-tagged tokens HumanML3D stores in
``texts/<name>.txt`` (``"word/POS"``, e.g. ``"walks/VERB"``), never re-tokenised. Every token gives

- the GloVe vector of its word (``our_vab_data.npy`` rows, indexed through ``our_vab_idx.pkl``; the
  vocabulary is ``our_vab_words.pkl``); a word outside the vocabulary takes the vector of ``unk`` and the
  part of speech ``OTHER``;
- a one-hot over the 15 categories ``POS_CATEGORIES``: the 9 tagger parts of speech, 5 "very important
  word" classes (a word of ``VIP_WORDS`` takes its class instead of its tag) and ``OTHER`` (any other tag).

A caption becomes a fixed-size sequence of ``max_text_len + 2`` tokens (``caption_tokens``)::

    tokens of length n < max_text_len:   [sos, t_1 .. t_n, eos, unk, ..., unk]   sent_len = n + 2
    tokens of length n >= max_text_len:  [sos, t_1 .. t_max_text_len, eos]      sent_len = max_text_len + 2

(the HumanML3D evaluation dataset: CondMDI ``data_loaders/humanml/data/dataset.py``,
``Text2MotionDatasetV2.__getitem__``; the vocabulary and the classes: ``utils/word_vectorizer.py``,
``WordVectorizer`` / ``POS_enumerator`` / ``VIP_dict``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from alm.errors import DataError

#: the 15 part-of-speech categories, in one-hot order (CondMDI ``word_vectorizer.py``, ``POS_enumerator``)
POS_CATEGORIES = ("VERB", "NOUN", "DET", "ADP", "NUM", "AUX", "PRON", "ADJ", "ADV",
                  "Loc_VIP", "Body_VIP", "Obj_VIP", "Act_VIP", "Desc_VIP", "OTHER")
POS_INDEX = {name: i for i, name in enumerate(POS_CATEGORIES)}

#: words whose class replaces their tag, in the order the classes are looked up (``VIP_dict``; ``dance``
#: appears twice in the source's action list, which changes nothing)
VIP_WORDS: dict[str, tuple[str, ...]] = {
    "Loc_VIP": ("left", "right", "clockwise", "counterclockwise", "anticlockwise", "forward", "back", "backward",
                "up", "down", "straight", "curve"),
    "Body_VIP": ("arm", "chin", "foot", "feet", "face", "hand", "mouth", "leg", "waist", "eye", "knee", "shoulder",
                 "thigh"),
    "Obj_VIP": ("stair", "dumbbell", "chair", "window", "floor", "car", "ball", "handrail", "baseball", "basketball"),
    "Act_VIP": ("walk", "run", "swing", "pick", "bring", "kick", "put", "squat", "throw", "hop", "dance", "jump",
                "turn", "stumble", "stop", "sit", "lift", "lower", "raise", "wash", "stand", "kneel", "stroll",
                "rub", "bend", "balance", "flap", "jog", "shuffle", "lean", "rotate", "spin", "spread", "climb"),
    "Desc_VIP": ("slowly", "carefully", "fast", "careful", "slow", "quickly", "happy", "angry", "sad", "happily",
                 "angrily", "sadly"),
}

MAX_TEXT_LEN = 20  # tokens of a caption kept before sos/eos (CondMDI ``evaluator_wrapper.py``, max_text_len)
GLOVE_PREFIX = "our_vab"
GLOVE_FILES = (f"{GLOVE_PREFIX}_data.npy", f"{GLOVE_PREFIX}_words.pkl", f"{GLOVE_PREFIX}_idx.pkl")


def pos_one_hot(pos: str) -> np.ndarray:
    """(15,) one-hot of a category; an unknown tag counts as ``OTHER``."""
    vec = np.zeros(len(POS_CATEGORIES), dtype=np.float32)
    vec[POS_INDEX.get(pos, POS_INDEX["OTHER"])] = 1.0
    return vec


def vip_class(word: str) -> Union[str, None]:
    """The "very important word" class of a word (the first class that lists it), or None."""
    for name, words in VIP_WORDS.items():
        if word in words:
            return name
    return None


def caption_tokens(tokens: Sequence[str], max_text_len: int = MAX_TEXT_LEN) -> tuple[list[str], int]:
    """A caption's tokens -> the ``max_text_len + 2`` tokens the evaluator reads and the sentence length
    (sos/eos added, cropped to ``max_text_len`` words, padded with ``unk/OTHER``; see the module docstring)."""
    tokens = list(tokens)
    if len(tokens) < max_text_len:
        seq = ["sos/OTHER", *tokens, "eos/OTHER"]
        sent_len = len(seq)
        seq += ["unk/OTHER"] * (max_text_len + 2 - sent_len)
    else:
        seq = ["sos/OTHER", *tokens[:max_text_len], "eos/OTHER"]
        sent_len = len(seq)
    return seq, sent_len


class WordVectors:
    """The GloVe vocabulary of the T2M evaluator, read from ``folder`` (``our_vab_*`` files)."""

    def __init__(self, folder: Union[str, Path]) -> None:
        folder = Path(folder).expanduser()
        missing = [name for name in GLOVE_FILES if not (folder / name).is_file()]
        if missing:
            raise DataError(f"GloVe vocabulary {folder}: missing {', '.join(missing)}")
        vectors = np.load(folder / GLOVE_FILES[0])
        with open(folder / GLOVE_FILES[1], "rb") as f:
            words = pickle.load(f)
        with open(folder / GLOVE_FILES[2], "rb") as f:
            index = pickle.load(f)
        self.vectors = {w: np.asarray(vectors[index[w]], dtype=np.float32) for w in words}
        if "unk" not in self.vectors:
            raise DataError(f"GloVe vocabulary {folder}: has no 'unk' word (the vector of unknown words)")
        self.dim = int(vectors.shape[1])

    def __len__(self) -> int:
        return len(self.vectors)

    def token(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """``"word/POS"`` -> (word vector (dim,), POS one-hot (15,)) (``WordVectorizer.__getitem__``)."""
        word, sep, pos = token.rpartition("/")
        if not sep:
            raise DataError(f"caption token {token!r} is not 'word/POS' (HumanML3D texts/*.txt tokens)")
        if word not in self.vectors:
            return self.vectors["unk"], pos_one_hot("OTHER")
        return self.vectors[word], pos_one_hot(vip_class(word) or pos)

    def caption(self, tokens: Sequence[str], max_text_len: int = MAX_TEXT_LEN
                ) -> tuple[np.ndarray, np.ndarray, int]:
        """One caption's (word vectors (S, dim), POS one-hots (S, 15), sentence length), S = max_text_len + 2."""
        seq, sent_len = caption_tokens(tokens, max_text_len)
        pairs = [self.token(t) for t in seq]
        return np.stack([w for w, _ in pairs]), np.stack([p for _, p in pairs]), sent_len

    def batch(self, captions: Sequence[Sequence[str]], max_text_len: int = MAX_TEXT_LEN
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Captions (token lists) -> word vectors (B, S, dim), POS one-hots (B, S, 15), sentence lengths (B,)
        (int64), in the given order."""
        if not captions:
            raise DataError("no captions to encode")
        items = [self.caption(c, max_text_len) for c in captions]
        words = torch.from_numpy(np.stack([w for w, _, _ in items])).float()
        pos = torch.from_numpy(np.stack([p for _, p, _ in items])).float()
        lengths = torch.tensor([n for _, _, n in items], dtype=torch.long)
        return words, pos, lengths


def write_word_vectors(folder: Union[str, Path], words: Sequence[str], vectors: np.ndarray) -> Path:
    """Write a vocabulary in the ``our_vab_*`` layout (``words[i]`` has row ``i``); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(words):
        raise DataError(f"{len(words)} words but {vectors.shape[0]} vectors")
    np.save(folder / GLOVE_FILES[0], vectors)
    with open(folder / GLOVE_FILES[1], "wb") as f:
        pickle.dump(list(words), f)
    with open(folder / GLOVE_FILES[2], "wb") as f:
        pickle.dump({w: i for i, w in enumerate(words)}, f)
    return folder
