"""The T2M evaluator (alm/motion/evaluator.py) and its GloVe captions (alm/motion/word_vectors.py).

Exact checks: the parameter names and count of the real networks, the caption layout of the HumanML3D
evaluation loader, the packed bidirectional GRU against a step-by-step loop, what the movement encoder reads,
the caller's order, and the one-line errors; all on the seeded tiny evaluator (``write_tiny_evaluator``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm.errors import CheckpointError, DataError
from alm.metrics.base import MissingWeightsError
from alm.motion.evaluator import (CHECKPOINT, MotionEncoder, MovementEncoder, TextEncoder, evaluator_files,
                                  load_evaluator, missing_files, num_parameters, write_tiny_evaluator)
from alm.motion.word_vectors import POS_CATEGORIES, WordVectors, caption_tokens, write_word_vectors


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_tiny_evaluator(tmp_path_factory.mktemp("t2m"), seed=0)
    return folder, load_evaluator(folder)


# -- networks -------------------------------------------------------------------------------------------
def test_real_networks_have_the_checkpoint_names_and_21_7M_parameters():
    # dims of CondMDI's EvaluatorMDMWrapper: dim_pose 263, dim_word 300, 15 POS, hidden 512 / 1024, co-emb 512
    nets = (MovementEncoder(259, 512, 512), TextEncoder(300, 15, 512, 512), MotionEncoder(512, 1024, 512))
    assert sum(p.numel() for n in nets for p in n.parameters()) == 21_690_560
    gru = [f"gru.{w}_l0{s}" for s in ("", "_reverse") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    head = ["input_emb.weight", "input_emb.bias", *gru, "output_net.0.weight", "output_net.0.bias",
            "output_net.1.weight", "output_net.1.bias", "output_net.3.weight", "output_net.3.bias", "hidden"]
    assert set(nets[0].state_dict()) == {"main.0.weight", "main.0.bias", "main.3.weight", "main.3.bias",
                                         "out_net.weight", "out_net.bias"}
    assert set(nets[1].state_dict()) == set(head) | {"pos_emb.weight", "pos_emb.bias"}
    assert set(nets[2].state_dict()) == set(head)
    assert tuple(nets[1].hidden.shape) == (2, 1, 512) and tuple(nets[2].hidden.shape) == (2, 1, 1024)


def test_tiny_evaluator_is_seeded_and_loads_in_the_real_layout(tmp_path, tiny):
    a, b, c = (write_tiny_evaluator(tmp_path / n, seed=s) for n, s in (("a", 3), ("b", 3), ("c", 4)))
    sa, sb, sc = (torch.load(f / CHECKPOINT, weights_only=True) for f in (a, b, c))
    assert set(sa) >= {"movement_encoder", "text_encoder", "motion_encoder"}
    assert all(torch.equal(sa["text_encoder"][k], sb["text_encoder"][k]) for k in sa["text_encoder"])
    assert not torch.equal(sa["text_encoder"]["hidden"], sc["text_encoder"]["hidden"])
    assert not missing_files(a)
    assert {p.relative_to(a).as_posix() for p in evaluator_files(a).values()} == {
        "t2m/text_mot_match/model/finest.tar", "dataset/t2m_mean.npy", "dataset/t2m_std.npy",
        "glove/our_vab_data.npy", "glove/our_vab_words.pkl", "glove/our_vab_idx.pkl"}
    ev = tiny[1]
    assert ev.dim == 8 and ev.mean.shape == (263,) and ev.unit_length == 4 and ev.max_text_len == 20
    assert 0 < num_parameters(ev) < 100_000 and not any(p.requires_grad for p in ev.parameters())


def test_missing_files_are_one_line_naming_the_file_and_the_scripts(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        load_evaluator(tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and "finest.tar" in msg and "download_t2m_evaluators.sh" in msg
    assert "download_glove.sh" in msg and "t2m_mean.npy" in msg


def test_a_checkpoint_of_other_sizes_is_a_one_line_error(tmp_path):
    folder = write_tiny_evaluator(tmp_path, seed=0)
    state = torch.load(folder / CHECKPOINT, weights_only=True)
    state["text_encoder"]["pos_emb.weight"] = torch.zeros(8, 14)  # 14 POS categories, not 15
    torch.save(state, folder / CHECKPOINT)
    with pytest.raises(CheckpointError, match="POS categories"):
        load_evaluator(folder)
    del state["motion_encoder"]
    torch.save(state, folder / CHECKPOINT)
    with pytest.raises(CheckpointError, match="motion_encoder"):
        load_evaluator(folder)


def _gru_last_by_steps(gru: torch.nn.GRU, h0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Forward over x[0..n-1], backward over x[n-1..0], one GRUCell step at a time: (2 H,)."""
    def cell(suffix: str) -> torch.nn.GRUCell:
        c = torch.nn.GRUCell(gru.input_size, gru.hidden_size)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        c.load_state_dict({k: getattr(gru, f"{k}_l0{suffix}") for k in names})
        return c
    fwd, bwd = cell(""), cell("_reverse")
    hf, hb = h0[0:1, 0], h0[1:2, 0]
    for t in range(x.shape[0]):
        hf = fwd(x[t:t + 1], hf)
    for t in reversed(range(x.shape[0])):
        hb = bwd(x[t:t + 1], hb)
    return torch.cat([hf[0], hb[0]])


def test_packed_encoders_equal_a_step_by_step_loop(tiny):
    ev = tiny[1]
    gen = torch.Generator().manual_seed(1)
    motions = torch.randn(3, 40, 263, generator=gen)
    lengths = torch.tensor([17, 40, 9])  # 4, 10 and 2 movements
    got = ev.motion_embeddings(motions, lengths)
    with torch.no_grad():
        for i, n in enumerate(lengths.tolist()):
            mov = ev.movement_encoder(motions[i:i + 1, :, :-4])[0, : n // 4]
            enc = ev.motion_encoder
            want = enc.output_net(_gru_last_by_steps(enc.gru, enc.hidden, enc.input_emb(mov)))
            torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
    words, pos, n = ev.encode_captions([["a/DET", "person/NOUN", "walks/VERB"], ["man/NOUN"]], "true")
    got = ev.text_embeddings(words, pos, n)
    with torch.no_grad():
        for i, k in enumerate(n.tolist()):
            enc = ev.text_encoder
            x = enc.input_emb(words[i, :k] + enc.pos_emb(pos[i, :k]))
            torch.testing.assert_close(got[i], enc.output_net(_gru_last_by_steps(enc.gru, enc.hidden, x)),
                                       atol=1e-5, rtol=1e-5)


def test_embeddings_come_back_in_the_callers_order(tiny):
    ev = tiny[1]
    gen = torch.Generator().manual_seed(2)
    motions, lengths = torch.randn(5, 48, 263, generator=gen), torch.tensor([12, 48, 20, 44, 20])
    whole = ev.motion_embeddings(motions, lengths)
    one_by_one = torch.cat([ev.motion_embeddings(motions[i:i + 1], lengths[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(whole, one_by_one, atol=1e-5, rtol=1e-5)
    perm = torch.tensor([3, 0, 4, 2, 1])
    torch.testing.assert_close(ev.motion_embeddings(motions[perm], lengths[perm]), whole[perm], atol=1e-5, rtol=1e-5)
    caps = [["a/DET", "man/NOUN"], ["the/DET", "person/NOUN", "walks/VERB", "forward/ADV"], ["jumps/VERB"]]
    w, p, n = ev.encode_captions(caps, "true")  # lengths 4, 6, 3: not sorted
    whole = ev.text_embeddings(w, p, n)
    one_by_one = torch.cat([ev.text_embeddings(w[i:i + 1], p[i:i + 1], n[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, one_by_one, atol=1e-5, rtol=1e-5)


def test_the_movement_encoder_reads_length_div_4_movements_and_no_foot_contacts(tiny):
    ev = tiny[1]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 64, 263, generator=gen)
    base = ev.motion_embeddings(x, [20])  # 5 movements; the last one (j = 4) sees frames up to 4 j + 6 = 22
    y = x.clone()
    y[..., -4:] = 9.0  # foot contacts are dropped
    y[:, 23:] = -7.0   # beyond the receptive field of the last movement
    torch.testing.assert_close(ev.motion_embeddings(y, [20]), base)
    torch.testing.assert_close(ev.motion_embeddings(x, [23]), base)  # 23 // 4 = 5 movements as well
    for frame in (5, 22):  # inside, and the last frame the 5th movement sees
        z = x.clone()
        z[:, frame, 10] += 1.0
        assert (ev.motion_embeddings(z, [20]) - base).abs().max() > 1e-4
    with pytest.raises(DataError, match="lengths"):
        ev.motion_embeddings(x, [3])  # no whole movement


# -- captions -----------------------------------------------------------------------------------------
def test_caption_tokens_add_sos_eos_pad_with_unk_and_crop_at_20():
    seq, n = caption_tokens(["a/DET", "man/NOUN", "walks/VERB"])
    assert n == 5 and len(seq) == 22
    assert seq[:5] == ["sos/OTHER", "a/DET", "man/NOUN", "walks/VERB", "eos/OTHER"] and set(seq[5:]) == {"unk/OTHER"}
    words = [f"w{i}/NOUN" for i in range(25)]
    seq, n = caption_tokens(words)
    assert n == 22 and seq == ["sos/OTHER", *words[:20], "eos/OTHER"]
    assert caption_tokens(words[:20])[1] == 22 and caption_tokens(words[:19])[1] == 21


def test_word_vectors_pos_one_hots_vip_classes_and_unknown_words(tmp_path):
    vocab = ["unk", "sos", "eos", "walk", "left", "person", "with"]
    vecs = np.arange(len(vocab) * 3, dtype=np.float32).reshape(len(vocab), 3)
    words = WordVectors(write_word_vectors(tmp_path, vocab, vecs))
    assert len(POS_CATEGORIES) == 15 and words.dim == 3 and len(words) == 7

    def check(token, row, category):
        vec, pos = words.token(token)
        np.testing.assert_array_equal(vec, vecs[row])
        assert pos.tolist() == [1.0 if c == category else 0.0 for c in POS_CATEGORIES], token

    check("walk/VERB", 3, "Act_VIP")      # a VIP word takes its class, not its tag
    check("left/ADV", 4, "Loc_VIP")
    check("person/NOUN", 5, "NOUN")
    check("with/SCONJ", 6, "OTHER")       # a tag outside the 9 tagger categories
    check("zebra/NOUN", 0, "OTHER")       # unknown word: unk's vector, OTHER
    w, p, n = words.batch([["person/NOUN", "walk/VERB"]])
    assert w.shape == (1, 22, 3) and p.shape == (1, 22, 15) and n.tolist() == [4]
    np.testing.assert_array_equal(w[0, 0].numpy(), vecs[1])   # sos
    np.testing.assert_array_equal(w[0, 3].numpy(), vecs[2])   # eos
    np.testing.assert_array_equal(w[0, 4].numpy(), vecs[0])   # unk padding
    with pytest.raises(DataError, match="word/POS"):
        words.token("walk")


def test_padded_caption_lengths_read_all_22_tokens(tiny):
    ev = tiny[1]
    caps = [["a/DET", "man/NOUN", "walks/VERB"], [f"walks/VERB"] * 30]
    assert ev.encode_captions(caps, "true")[2].tolist() == [5, 22]
    w, p, n = ev.encode_captions(caps, "padded")
    assert n.tolist() == [22, 22]
    true = ev.text_embeddings(*ev.encode_captions(caps, "true"))
    padded = ev.text_embeddings(w, p, n)
    assert (true[0] - padded[0]).abs().max() > 1e-4  # the unk padding is read
    torch.testing.assert_close(true[1], padded[1])   # a cropped caption has no padding
