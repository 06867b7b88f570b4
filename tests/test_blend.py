"""The "*" rows' pixel blend (alm/blend.py): mode "float" against a frozen copy of the original
implementation (bit for bit), mode "authors" against an independent numpy / OpenCV transcription of the
authors' code (Hleephilip/ALM_public, alm/inpainting.py and alm/image_utils.py; 0 grey levels apart)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from alm.blend import authors_blend_weights, blend_output, blend_weights, to_levels
from alm.errors import ConfigError


# --- frozen copies / transcriptions (independent of alm.blend) ---------------------------------------------

def _old_blend_output(output, source, masks, kernel=21):
    """The project's blend before modes existed (alm/tasks/inpaint.py), kept verbatim."""
    from torchvision.transforms.functional import gaussian_blur

    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    blurred = gaussian_blur(masks.float(), [kernel, kernel], [sigma, sigma])
    b = (1 - (1 - masks) * (1 - blurred)).to(output.dtype)
    return b * output + (1 - b) * source


def _authors_tensor_to_image(gen: np.ndarray) -> np.ndarray:
    """Their tensor_to_image on an (H, W, 3) array of the VAE's dtype: clamp(x/2+0.5) * 255, round, uint8."""
    image = np.clip(gen / 2 + 0.5, 0, 1)
    return (image * 255).round().astype(np.uint8)


def _authors_blend(gen: np.ndarray, source: np.ndarray, mask_file: np.ndarray, k: int = 21) -> np.ndarray:
    """Their steps for one image: ``gen`` (H, W, 3) decoder output in [-1, 1] (any float dtype),
    ``source`` (H, W, 3) uint8, ``mask_file`` (H, W) uint8 as read from the mask PNG (white = hole)."""
    binary = (mask_file >= 128).astype(np.float32)[..., None]  # load_mask
    blurred = cv2.GaussianBlur(binary[..., 0], (k, k), 0)[..., None]
    blend_mask = 1.0 - (1.0 - binary) * (1.0 - blurred)
    pixel_mask = binary.astype(np.float32)  # run()
    masked_source = source.astype(np.float32) * (1 - pixel_mask)
    generated = _authors_tensor_to_image(gen)
    blended = generated.astype(np.float32) * blend_mask + masked_source * (1 - blend_mask)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


# --- helpers ------------------------------------------------------------------------------------------

def _masks(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n mask files (uint8 0/255, white = hole): a box, strokes of random pixels, sometimes empty/full rows."""
    out = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        h, w = rng.integers(size // 8, size // 2, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        out[i, y : y + h, x : x + w] = 255
        out[i][rng.random((size, size)) < 0.02] = 255
    out[0, :, : size // 2] = 255  # a half mask touching the border (reflect-101 matters)
    return out


def _to_tensor(u8: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1] as the data sets make them."""
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _levels(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] holding levels -> (B, H, W, 3) uint8 (exact: asserts they are levels)."""
    v = (x.double() + 1) * 127.5
    assert (v - v.round()).abs().max() < (0.1 if x.dtype == torch.float16 else 1e-3)
    return v.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _problem(size: int, n: int = 3, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed + size)
    source = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    # decoder outputs: mostly in [-1, 1], some beyond (clamped), not on the 256 levels
    gen = rng.uniform(-1.1, 1.1, (n, size, size, 3)).astype(dtype)
    files = _masks(rng, n, size)
    return gen, source, files


# --- mode "float": the original implementation ---------------------------------------------------------

@pytest.mark.parametrize("k", [21, 5, 3])
def test_float_mode_is_the_original_blend_bit_for_bit(k):
    gen, source, files = _problem(64)
    out, src = torch.from_numpy(gen).permute(0, 3, 1, 2), _to_tensor(source)
    m = torch.from_numpy(files >= 128).float()[:, None]
    got = blend_output(out, src, m, k, mode="float")
    assert torch.equal(got, _old_blend_output(out, src, m, k))
    half = blend_output(out.half(), src.half(), m, k, mode="float")
    assert half.dtype == torch.float16 and torch.equal(half, _old_blend_output(out.half(), src.half(), m, k))


def test_blend_weights_are_one_in_the_hole():
    m = torch.zeros(1, 1, 40, 48)
    m[..., 10:25, 5:30] = 1
    b = blend_weights(m, 21)
    assert torch.all(b[m == 1] == 1) and b.min() >= 0 and b[..., 0, -1] < 1e-6


# --- mode "authors": their code, exactly ---------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 512])
def test_authors_mode_equals_their_steps_exactly(size):
    gen, source, files = _problem(size, n=2 if size == 512 else 3)
    m = torch.from_numpy(files >= 128).float()[:, None]
    got = blend_output(torch.from_numpy(gen).permute(0, 3, 1, 2), _to_tensor(source), m, 21, mode="authors")
    assert got.dtype == torch.float32 and got.shape == (len(gen), 3, size, size)
    want = np.stack([_authors_blend(g, s, f) for g, s, f in zip(gen, source, files)])
    got_u8 = _levels(got)
    assert np.array_equal(got_u8, want), f"{(got_u8 != want).sum()} values differ"
    # returned exactly as level / 127.5 - 1 (the data sets' scale), and the hole is the rounded output
    assert torch.equal(got, _to_tensor(want))
    hole = np.broadcast_to((files >= 128)[..., None], want.shape)
    assert np.array_equal(want[hole], np.stack([_authors_tensor_to_image(g) for g in gen])[hole])


def test_authors_mode_with_generated_levels_and_small_kernels():
    """Generated images already on the 256 levels (as a uint8 PNG re-read) and OpenCV's k <= 9 tables."""
    rng = np.random.default_rng(1)
    for k in (3, 5, 9, 11):
        gen_u8 = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        source = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        files = _masks(rng, 2, 32)
        m = torch.from_numpy(files >= 128).float()[:, None]
        got = _levels(blend_output(_to_tensor(gen_u8), _to_tensor(source), m, k))  # mode defaults to authors
        gen = gen_u8.astype(np.float32) / 127.5 - 1.0
        want = np.stack([_authors_blend(g, s, f, k) for g, s, f in zip(gen, source, files)])
        assert np.array_equal(got, want), k


def test_authors_mode_rounds_in_the_decoder_dtype():
    """Their VAE runs in float16 by default: tensor_to_image rounds the float16 values (in float16)."""
    gen, source, files = _problem(64, dtype=np.float16)
    m = torch.from_numpy(files >= 128).float()[:, None]
    out16 = torch.from_numpy(gen).permute(0, 3, 1, 2)
    want = np.stack([_authors_blend(g, s, f) for g, s, f in zip(gen, source, files)])
    got16 = blend_output(out16, _to_tensor(source), m, 21)
    assert got16.dtype == torch.float16 and np.array_equal(_levels(got16), want)
    # the same values in a float32 tensor (the runner's .float()) round differently somewhere,
    # unless quantize_dtype says in which dtype the decoder made them
    got32 = blend_output(out16.float(), _to_tensor(source), m, 21)
    assert not np.array_equal(_levels(got32), want)
    fixed = blend_output(out16.float(), _to_tensor(source), m, 21, quantize_dtype=torch.float16)
    assert np.array_equal(_levels(fixed), want)


def test_the_exact_check_catches_other_roundings():
    """The transcription is sensitive: truncating casts or a single rounding do not reproduce it."""
    gen, source, files = _problem(64)
    want = np.stack([_authors_blend(g, s, f) for g, s, f in zip(gen, source, files)])
    got = _levels(blend_output(torch.from_numpy(gen).permute(0, 3, 1, 2), _to_tensor(source),
                               torch.from_numpy(files >= 128).float()[:, None]))
    assert np.array_equal(got, want)
    for variant in ("truncate_gen", "truncate_out", "round_once"):
        alt = []
        for g, s, f in zip(gen, source, files):
            binary = (f >= 128).astype(np.float32)[..., None]
            b = 1.0 - (1.0 - binary) * (1.0 - cv2.GaussianBlur(binary[..., 0], (21, 21), 0)[..., None])
            x = np.clip(g / 2 + 0.5, 0, 1) * 255
            if variant == "truncate_gen":  # np.uint8 cast instead of round
                x = x.astype(np.uint8).astype(np.float32)
            elif variant != "round_once":  # round_once: no rounding before the blend
                x = x.round()
            y = x * b + s.astype(np.float32) * (1 - b)
            y = y if variant == "truncate_out" else np.rint(y)
            alt.append(np.clip(y, 0, 255).astype(np.uint8))
        assert not np.array_equal(np.stack(alt), got), variant


@pytest.mark.parametrize("size", [64, 512])
def test_the_two_modes_differ_by_at_most_one_level(size):
    gen, source, files = _problem(size, n=2)
    gen = gen.clip(-1, 1)  # decoded images are clamped to [-1, 1] (the float mode clamps nothing)
    out, src = torch.from_numpy(gen).permute(0, 3, 1, 2), _to_tensor(source)
    m = torch.from_numpy(files >= 128).float()[:, None]
    authors = (blend_output(out, src, m, 21, mode="authors").double() + 1) * 127.5
    flt = (blend_output(out, src, m, 21, mode="float").clamp(-1, 1).double() + 1) * 127.5
    diff = (authors - flt).abs()
    assert diff.max() <= 1 + 1e-3 and diff.max() > 0.5
    assert 0 < (authors.round() != flt.round()).float().mean() < 0.5  # rounding the float blend once is not theirs


def test_authors_weights_are_opencv_blur_and_binary_masks_only():
    rng = np.random.default_rng(3)
    files = _masks(rng, 2, 48)
    m = torch.from_numpy(files >= 128).float()[:, None]
    b = authors_blend_weights(m, 21)
    assert b.dtype == torch.float32
    for i in range(2):
        binary = (files[i] >= 128).astype(np.float32)
        assert np.array_equal(b[i, 0].numpy(), 1.0 - (1.0 - binary) * (1.0 - cv2.GaussianBlur(binary, (21, 21), 0)))
    assert torch.all(b[m == 1] == 1)
    with pytest.raises(ValueError, match="binary"):
        authors_blend_weights(m * 0.5, 21)
    x = torch.zeros(1, 3, 48, 48)
    with pytest.raises(ConfigError, match="blend_kernel"):
        blend_output(x, x, m[:1], 4)
    with pytest.raises(ConfigError, match="too large"):
        blend_output(x, x, m[:1], 101, mode="authors")
    with pytest.raises(ConfigError, match="blend mode"):
        blend_output(x, x, m[:1], 21, mode="uint8")
    # a source that is not an 8-bit image (e.g. the GMM data) is refused, not silently rounded / clamped
    src = _to_tensor(rng.integers(0, 256, (1, 48, 48, 3), dtype=np.uint8))
    for bad in (x, src + 0.3 / 127.5, src * 1.5):  # 0.0 is level 127.5: not one of the 256
        with pytest.raises(ConfigError, match="blend_mode=float"):
            blend_output(x, bad, m[:1], 21)
    assert torch.equal(blend_output(x, src.half(), m[:1], 21), blend_output(x, src, m[:1], 21))  # float16 levels: fine


def test_to_levels_is_their_tensor_to_image():
    # every finite float16 value (their VAE's output), held in float16 or in a float32 tensor
    every = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.float16)
    every = every[torch.isfinite(every)]
    want16 = _authors_tensor_to_image(every.numpy())
    assert np.array_equal(to_levels(every).numpy().astype(np.uint8), want16)
    assert np.array_equal(to_levels(every.float(), torch.float16).numpy().astype(np.uint8), want16)
    x = torch.linspace(-1.2, 1.2, 20001)
    want = _authors_tensor_to_image(x.numpy())
    assert np.array_equal(to_levels(x).numpy().astype(np.uint8), want)
    half = x.half()
    assert np.array_equal(to_levels(half).numpy().astype(np.uint8), _authors_tensor_to_image(half.numpy()))
    # float16 products land on k + 0.5 often: numpy's round half to even decides them, as torch.round
    scaled = (half / 2 + 0.5).clamp(0, 1) * 255
    ties = scaled.float() - scaled.float().floor() == 0.5
    assert ties.sum() > 100
    assert torch.equal(to_levels(half)[ties] % 2, torch.zeros(int(ties.sum())))


def test_far_from_the_hole_the_source_is_kept_exactly():
    rng = np.random.default_rng(4)
    source = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    m = torch.zeros(1, 1, 64, 64)
    m[..., 20:30, 20:30] = 1
    got = _levels(blend_output(torch.ones(1, 3, 64, 64), _to_tensor(source), m, 21))
    assert np.array_equal(got[0, :5], source[0, :5]) and np.all(got[0, 20:30, 20:30] == 255)
