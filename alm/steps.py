"""The reverse-process math as pure functions of tensors (docs/method.md §1-8).

Notation: ``y`` = Y_t (the sampled variable), ``x`` = X_t (observed content at the same level),
``m`` = M (1 = unobserved, to generate), ``e`` = a noise prediction, ``ab_t``/``ab_s`` = cumulative
alphas at the current and previous timestep. Scalars may be Python floats or 0-d tensors.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def _f(v) -> float:
    return float(v)


def predict_x0(y: Tensor, e: Tensor, ab_t) -> Tensor:
    """Tweedie's estimate: x0_hat = (Y_t - sqrt(1-ab_t) e) / sqrt(ab_t)."""
    ab_t = _f(ab_t)
    return (y - (1 - ab_t) ** 0.5 * e) / ab_t**0.5


def eps_from_x0(y: Tensor, x0: Tensor, ab_t) -> Tensor:
    """The noise implied by (Y_t, x0): e = (Y_t - sqrt(ab_t) x0) / sqrt(1-ab_t)."""
    ab_t = _f(ab_t)
    return (y - ab_t**0.5 * x0) / (1 - ab_t) ** 0.5


def ddim_from_x0(x0: Tensor, e: Tensor, ab_s) -> Tensor:
    """DDIM (eta=0) re-noising: sqrt(ab_s) x0 + sqrt(1-ab_s) e."""
    ab_s = _f(ab_s)
    return ab_s**0.5 * x0 + (1 - ab_s) ** 0.5 * e


def ddim_step(y: Tensor, e: Tensor, ab_t, ab_s) -> Tensor:
    """DDIM(Y_t, e) = sqrt(ab_s) x0_hat + sqrt(1-ab_s) e  (Song et al. 2021, eta = 0)."""
    return ddim_from_x0(predict_x0(y, e, ab_t), e, ab_s)


def ddim_inversion_step(x_s: Tensor, e: Tensor, ab_s, ab_t) -> Tensor:
    """One DDIM inversion step from the less noisy level s up to t (the DDIM step run backwards)."""
    return ddim_step(x_s, e, ab_s, ab_t)


def ddpm_posterior_mean(y: Tensor, x0: Tensor, ab_t, ab_s) -> Tensor:
    """Mean of q(x_s | x_t, x0) (Ho et al. 2020, Eq. 7) for a possibly strided step t -> s."""
    ab_t, ab_s = _f(ab_t), _f(ab_s)
    alpha = ab_t / ab_s  # the effective alpha of the (strided) step
    beta = 1 - alpha
    return (ab_s**0.5 * beta / (1 - ab_t)) * x0 + (alpha**0.5 * (1 - ab_s) / (1 - ab_t)) * y


def posterior_std(ab_t, ab_s) -> float:
    """sigma_t = sqrt((1-ab_s)/(1-ab_t)) * sqrt(1 - ab_t/ab_s)  (paper Eq. 10, DDPM 'fixed small')."""
    ab_t, ab_s = _f(ab_t), _f(ab_s)
    return ((1 - ab_s) / (1 - ab_t)) ** 0.5 * max(1 - ab_t / ab_s, 0.0) ** 0.5


def ddpm_step(y: Tensor, e: Tensor, ab_t, ab_s, noise: Tensor) -> Tensor:
    """Ancestral DDPM step: posterior mean from x0_hat plus sigma_t * z."""
    x0 = predict_x0(y, e, ab_t)
    return ddpm_posterior_mean(y, x0, ab_t, ab_s) + posterior_std(ab_t, ab_s) * noise


def cfg(e_cond: Tensor, e_null: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: e(∅) + g (e(c) - e(∅))."""
    return e_null + scale * (e_cond - e_null)


def q_sample(x0: Tensor, ab, noise: Tensor) -> Tensor:
    """Forward process: sqrt(ab) x0 + sqrt(1-ab) noise."""
    ab = _f(ab)
    return ab**0.5 * x0 + (1 - ab) ** 0.5 * noise


def blend(x: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """E_t = (1-M) X_t + M Y_t: observed content outside the hole, the sample inside."""
    return (1 - m) * x + m * y


# --- method terms -----------------------------------------------------------------------------

def sync_term(x: Tensor, y: Tensor, m: Tensor, w1: float) -> Tensor:
    """Observed-region preservation (paper Eq. 3): w1 (1-M) (X_t - Y_t)."""
    return w1 * (1 - m) * (x - y)


def alm_move(m: Tensor, e_y: Tensor, e_e: Tensor, w_cond: float, w_joint: float) -> Tensor:
    """The likelihood move of Eq. 8: M (l1 (e(Y) - e(E)) - l2 e(E)), with l1 = w_cond, l2 = w_joint.

    Written as w2 e(Y) - w3 e(E) it is paper Eq. 9 with w2 = l1, w3 = l1 + l2.
    """
    return m * (w_cond * (e_y - e_e) - w_joint * e_e)


def syncsde_gamma(ab_t, ab_s) -> float:
    """SyncSDE's own weight: gamma_t = sqrt(ab_s/ab_t) - sqrt((1-ab_s)/(1-ab_t))."""
    ab_t, ab_s = _f(ab_t), _f(ab_s)
    return (ab_s / ab_t) ** 0.5 - ((1 - ab_s) / (1 - ab_t)) ** 0.5


def reconstruction_x0(x0_hat: Tensor, grad: Tensor, m: Tensor, w_r: float, ab_t) -> Tensor:
    """Reconstruction guidance (Ho et al. 2022): x0~ = x0_hat - (w_r sqrt(ab_t)/2) M grad."""
    return x0_hat - (w_r * _f(ab_t) ** 0.5 / 2) * m * grad


def impute(y: Tensor, x_obs: Tensor, m: Tensor) -> Tensor:
    """Replace the observed region by the (noised) observation: M Y + (1-M) X  (BLD, MDM imputation)."""
    return m * y + (1 - m) * x_obs
