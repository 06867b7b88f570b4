"""dataset=humanml3d (alm/data/humanml3d.py) and its smoke folder (alm/data/smoke_motion.py).

Hand-made folders use motions whose value at (frame t, feature f) is ``1000 t + f``, so a crop can be
read back exactly: its first value names the frame it starts at.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from alm.data.humanml3d import FEATURES, HumanML3D, build_entries, crop_window, load_stats, parse_text_line
from alm.data.smoke_motion import make_smoke_humanml3d
from alm.errors import DataError

WHOLE = "a person walks.#a/DET person/NOUN walk/VERB#0.0#0.0"


def _motion(frames: int, width: int = FEATURES) -> np.ndarray:
    return (1000.0 * np.arange(frames)[:, None] + np.arange(width)[None, :]).astype(np.float32)


def _folder(root: Path, motions: dict, texts: dict, split: list[str] | None = None) -> Path:
    """A HumanML3D folder: ``motions`` name -> frames (or an array), ``texts`` name -> lines."""
    (root / "new_joint_vecs_abs_3d").mkdir(parents=True, exist_ok=True)
    (root / "texts").mkdir(parents=True, exist_ok=True)
    for name, m in motions.items():
        np.save(root / "new_joint_vecs_abs_3d" / f"{name}.npy", _motion(m) if isinstance(m, int) else m)
    for name, lines in texts.items():
        (root / "texts" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "test.txt").write_text("\n".join(split if split is not None else list(motions)) + "\n")
    return root


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return make_smoke_humanml3d(tmp_path_factory.mktemp("smoke") / "HumanML3D", num=16, frames_range=(40, 48), seed=0)


# --- the smoke folder ------------------------------------------------------------------------------

def test_smoke_folder_loads_with_captions_and_tokens(smoke):
    ds = HumanML3D(smoke, max_frames=48)
    subs = [e for e in ds.entries if e.name != e.source]
    assert len(ds) == 16 + len(subs) and subs  # every motion, and some sub-motions of its 4th motions
    assert ds.shape == (FEATURES, 1, 48)
    for i in range(len(ds)):
        item = ds[i]
        assert item.image.shape == (FEATURES, 1, 48) and item.image.dtype == torch.float32
        assert item.label == item.meta["caption"]
        lines = (smoke / "texts" / f"{item.meta['source']}.txt").read_text().splitlines()
        assert any(line.startswith(item.label + "#" + " ".join(item.meta["tokens"]) + "#") for line in lines)
        assert all("/" in tok for tok in item.meta["tokens"])


def test_smoke_respects_frames_range_and_is_kept(smoke, tmp_path):
    for path in (smoke / "new_joint_vecs_abs_3d").glob("*.npy"):
        assert 40 <= np.load(path).shape[0] <= 48
    mean, std = load_stats(smoke)
    assert mean.shape == std.shape == (FEATURES,) and bool((std > 0).all())
    stamp = (smoke / "new_joint_vecs_abs_3d" / "000000.npy").stat().st_mtime_ns
    make_smoke_humanml3d(smoke, num=16, frames_range=(40, 48), seed=0)  # same arguments: kept
    assert (smoke / "new_joint_vecs_abs_3d" / "000000.npy").stat().st_mtime_ns == stamp
    other = make_smoke_humanml3d(tmp_path / "H", num=4, frames_range=(60, 64), seed=1)
    assert all(60 <= np.load(p).shape[0] <= 64 for p in (other / "new_joint_vecs_abs_3d").glob("*.npy"))


# --- items -----------------------------------------------------------------------------------------

def test_item_is_a_pure_function_of_its_index(smoke):
    a = HumanML3D(smoke, max_frames=48, seed=3)
    first = a[5]
    for i in (0, 9, 2, 7):
        a[i]
    again, fresh = a[5], HumanML3D(smoke, max_frames=48, seed=3)[5]
    for other in (again, fresh):
        assert torch.equal(other.image, first.image) and other.meta == first.meta and other.label == first.label
    draws = {(HumanML3D(smoke, max_frames=48, seed=s, order="length")[3].meta["offset"],
              HumanML3D(smoke, max_frames=48, seed=s, order="length")[3].meta["caption"]) for s in range(8)}
    assert len(draws) > 1  # the seed drives the caption and crop draws


def test_lengths_offsets_and_zero_padding(smoke):
    ds = HumanML3D(smoke, max_frames=48, order="length")
    lengths = set()
    for i in range(len(ds)):
        item = ds[i]
        n, off, entry = item.meta["length"], item.meta["offset"], ds.entries[i]
        lengths.add(n)
        assert n % 4 == 0 and 40 - 4 <= n <= 48  # a "double" crop of a 40-frame motion gives 36
        assert entry.start <= off and off + n <= entry.stop
        assert bool((item.image[:, :, n:] == 0).all())
        source = np.load(smoke / "new_joint_vecs_abs_3d" / f"{item.meta['source']}.npy")
        assert torch.equal(item.image[:, 0, :n], torch.from_numpy(source[off:off + n]).T)
    assert len(lengths) > 1


def test_crop_window_follows_condmdi_rule():
    counts = {44: 0, 40: 0}
    for s in range(300):
        off, n = crop_window(45, 4, 196, np.random.default_rng(s))
        counts[n] += 1  # 45 -> 44 ("single") or 40 ("double"); anything else is a KeyError
        assert 0 <= off <= 45 - n
    assert 0.25 < counts[40] / 300 < 0.42  # the coin: "double" one time in three
    assert {crop_window(45, 10, 196, np.random.default_rng(s))[1] for s in range(50)} == {40}  # unit >= 10: single
    off, n = crop_window(150, 4, 48, np.random.default_rng(0))
    assert n == 48 and 0 <= off <= 102  # capped at max_frames: a window of a long sub-motion


# --- which motions, in which order -------------------------------------------------------------------

def test_sub_motions_cut_by_tags_sorted_by_length(tmp_path):
    texts = {
        "m1": [WHOLE, "jumps.#jump/VERB#1.0#3.5", "short.#short/ADJ#0.0#1.0", "also whole.#also/ADV#nan#nan"],
        "m2": [WHOLE],
        "long": [WHOLE, "part.#part/NOUN#0.0#2.5"],   # 200 frames: dropped with its sub-motion
        "tiny": [WHOLE],                              # 39 frames: dropped
        "cut": [WHOLE],                               # 199 frames: kept, cut to max_frames
        "m3": [WHOLE],                                # 50 frames: ties with m1's sub-motion, comes after it
    }
    root = _folder(tmp_path / "H", {"m1": 120, "m2": 60, "long": 200, "tiny": 39, "cut": 199, "m3": 50}, texts)
    ds = HumanML3D(root, order="length")
    got = [(e.name, e.source, e.start, e.stop, [c.caption for c in e.captions]) for e in ds.entries]
    assert got == [
        ("A_m1", "m1", 20, 70, ["jumps."]),  # [int(1.0 * 20), int(3.5 * 20)) = frames 20..69
        ("m3", "m3", 0, 50, ["a person walks."]),
        ("m2", "m2", 0, 60, ["a person walks."]),
        ("m1", "m1", 0, 120, ["a person walks.", "also whole."]),  # NaN tags read as 0: whole motion
        ("cut", "cut", 0, 196, ["a person walks."]),
    ]
    item = ds[0]
    assert item.label == "jumps." and item.meta["tokens"] == ["jump/VERB"] and item.meta["name"] == "A_m1"
    first_frame = int(item.image[0, 0, 0]) // 1000
    assert first_frame == item.meta["offset"] and 20 <= first_frame and first_frame + item.meta["length"] <= 70


def test_unparseable_text_or_missing_file_skips_like_condmdi(tmp_path):
    texts = {"bad": [WHOLE, "part.#part/NOUN#0.5#3.0", "no tags here"], "ok": [WHOLE]}
    root = _folder(tmp_path / "H", {"bad": 100, "ok": 80, "nofile": 90}, texts)
    with pytest.warns(UserWarning, match="skipped"):
        ds = HumanML3D(root, order="length")
    assert [e.name for e in ds.entries] == ["A_bad", "ok"]  # the sub-motion before the bad line stays
    assert sorted(ds.skipped) == ["bad", "nofile"]


def test_shuffled_order_is_a_seeded_permutation(smoke):
    by_length = [e.name for e in HumanML3D(smoke, max_frames=48, order="length").entries]
    a = [e.name for e in HumanML3D(smoke, max_frames=48, seed=0).entries]
    assert sorted(a) == sorted(by_length) and a != by_length
    assert a == [e.name for e in HumanML3D(smoke, max_frames=48, seed=0).entries]
    assert a != [e.name for e in HumanML3D(smoke, max_frames=48, seed=1).entries]


def test_parse_text_line():
    cap, start, end = parse_text_line("a man kicks.#a/DET man/NOUN kick/VERB#0.5#nan\n")
    assert (cap.caption, cap.tokens, start, end) == ("a man kicks.", ("a/DET", "man/NOUN", "kick/VERB"), 0.5, 0.0)
    with pytest.raises(ValueError):
        parse_text_line("only a caption")


def test_input_files_name_what_is_read(tmp_path):
    root = _folder(tmp_path / "H", {"m1": 60, "m2": 30}, {"m1": [WHOLE], "m2": [WHOLE]})
    files = HumanML3D(root).input_files()
    assert files["content"] == [root / "test.txt", root / "texts" / "m1.txt"]
    assert files["stat"] == [root / "new_joint_vecs_abs_3d" / "m1.npy"]


# --- errors -----------------------------------------------------------------------------------------

def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "docs/datasets.md" in msg
    return msg


def test_missing_folder_split_or_stats_is_one_line(tmp_path):
    with pytest.raises(DataError) as err:
        HumanML3D(tmp_path / "nowhere")
    assert "nowhere" in _one_line(err)
    root = _folder(tmp_path / "H", {"m1": 60}, {"m1": [WHOLE]})
    with pytest.raises(DataError) as err:
        HumanML3D(root, split="val")
    assert "val.txt" in _one_line(err)
    with pytest.raises(DataError) as err:
        load_stats(root)
    assert "Mean_abs_3d.npy" in _one_line(err)
    (root / "new_joint_vecs_abs_3d" / "m1.npy").unlink()
    (root / "new_joint_vecs_abs_3d").rmdir()
    with pytest.raises(DataError) as err:
        HumanML3D(root)
    assert "new_joint_vecs_abs_3d" in _one_line(err)


def test_wrong_width_is_one_line(tmp_path):
    root = _folder(tmp_path / "H", {"m1": 60, "rel": _motion(60, width=251)}, {"m1": [WHOLE], "rel": [WHOLE]})
    with pytest.raises(DataError) as err:
        HumanML3D(root)
    assert "rel.npy" in _one_line(err) and "(60, 251)" in str(err.value)


def test_nothing_left_after_filtering_is_one_line(tmp_path):
    root = _folder(tmp_path / "H", {"m1": 30}, {"m1": [WHOLE]})
    with pytest.raises(DataError) as err:
        HumanML3D(root)
    _one_line(err)


# --- the config ---------------------------------------------------------------------------------------

def test_config_composes_and_builds(tmp_path, monkeypatch):
    from alm.config import build, compose

    monkeypatch.delenv("ALM_HUMANML3D", raising=False)
    monkeypatch.setenv("ALM_DATA", str(tmp_path))
    node = compose(["dataset=humanml3d"]).dataset
    assert node.root == f"{tmp_path}/HumanML3D" and node.split == "test" and node.max_frames == 196
    assert (node.min_frames, node.unit_length, node.order, node.seed) == (40, 4, "shuffled", 0)
    assert compose(["dataset=humanml3d", "seed=7"]).dataset.seed == 7  # replication r (seed=r): its own draws
    with pytest.raises(DataError) as err:  # nothing there yet: the one-line error says how to prepare it
        build(node)
    _one_line(err)
    make_smoke_humanml3d(tmp_path / "HumanML3D", num=6, frames_range=(40, 48))
    ds = build(compose(["dataset=humanml3d", "dataset.max_frames=48"]).dataset)
    assert isinstance(ds, HumanML3D) and ds.shape == (FEATURES, 1, 48) and len(ds) >= 6
    monkeypatch.setenv("ALM_HUMANML3D", str(tmp_path / "elsewhere"))
    assert compose(["dataset=humanml3d"]).dataset.root == str(tmp_path / "elsewhere")


def test_build_entries_is_condmdi_order_without_shuffle(tmp_path):
    """Equal lengths keep the split file's order (a stable sort by length only)."""
    root = _folder(tmp_path / "H", {"b": 60, "a": 60, "c": 44}, {n: [WHOLE] for n in "abc"}, split=["b", "a", "c"])
    entries, skipped = build_entries(root, ["b", "a", "c"], 40, 196)
    assert [e.name for e in entries] == ["c", "b", "a"] and skipped == []
