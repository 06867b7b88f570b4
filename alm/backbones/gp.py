"""An exact Gaussian-process "backbone" on 1-D fields: the testbed where a wide canvas has a true answer.

docs/wide_gp.md is the page of this model and of its metrics (``alm.metrics.wide_gp``). Notation
(docs/method.md §1 for the diffusion symbols):

| symbol      | here                      | meaning                                                     |
|-------------|---------------------------|-------------------------------------------------------------|
| n           | ``length``                | entries of one window: data_shape = sample_shape = (1, 1, n) |
| K           | ``num_components``        | components of the mixture                                   |
| pi_k        | ``weights[k]``            | component weights                                           |
| m_k         | ``components[k].mean``    | constant mean of component k                                |
| k_k(d)      | ``kernel_matrix``         | stationary covariance of two entries d apart (SE / Matérn-5/2) |
| Sigma_k     | ``k_k(|i-j|) + nugget I`` | covariance of component k on any grid of consecutive entries |
| ab          | ``alphas_cumprod[t]``     | cumulative alpha of the DDPM table at timestep t            |

Data: x0 ~ sum_k pi_k N(m_k 1, Sigma_k) on n consecutive entries. Each component is a stationary
process on the integers, so the distribution of any n consecutive entries of a longer field
(``canvas_distribution(L)``) is the window distribution itself: the wide canvas has an exact law.
Forward process x_t = sqrt(ab) x0 + sqrt(1-ab) noise, hence

    p_t = sum_k pi_k N(sqrt(ab) m_k, A_k),    A_k = ab Sigma_k + (1 - ab) I
    eps(z, t) = -sqrt(1-ab) grad log p_t(z) = sqrt(1-ab) sum_k r_k(z) A_k^{-1} (z - sqrt(ab) m_k)

with responsibilities r_k(z) = softmax_k(log pi_k + log N(z; sqrt(ab) m_k, A_k)), exact at every t.
A_k^{-1} and log det A_k are computed once per timestep (Cholesky, float64) and cached.

Kernels, with d the distance between two entries (in entries) and l the length scale:
``se``:       v exp(-d^2 / (2 l^2));
``matern52``: v (1 + sqrt(5) d/l + 5 d^2/(3 l^2)) exp(-sqrt(5) d/l).
``nugget`` (white noise, variance units) is added to every component's diagonal: it keeps the SE
covariance of a long canvas well conditioned, and is part of the model (the eps above includes it).

This module imports no metric: ``alm.metrics.wide_gp`` imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from alm.backbones.base import Backbone, Cond
from alm.backbones.gmm import SCHEDULER_CONFIG, categorical_from_uniform
from alm.config import to_plain
from alm.errors import ConfigError, DataError

Tensor = torch.Tensor

LOG_2PI = math.log(2 * math.pi)
KERNELS = ("se", "matern52")

#: the default mixture (docs/wide_gp.md explains the choice)
DEFAULT_COMPONENTS: tuple[dict[str, Any], ...] = (
    {"weight": 0.5, "mean": -0.5, "kernel": "matern52", "length_scale": 3.0, "variance": 0.0625},
    {"weight": 0.5, "mean": 0.5, "kernel": "se", "length_scale": 8.0, "variance": 0.0625},
)


@dataclass(frozen=True)
class GPComponent:
    """One stationary Gaussian process: constant ``mean``, ``kernel`` with ``length_scale`` and ``variance``."""

    weight: float = 1.0
    mean: float = 0.0
    kernel: str = "se"
    length_scale: float = 4.0
    variance: float = 0.0625

    @classmethod
    def from_config(cls, node: Any, index: int) -> "GPComponent":
        if isinstance(node, GPComponent):
            return node
        if not isinstance(node, Mapping):
            raise ConfigError(f"backbone.components[{index}] must be a mapping (weight, mean, kernel, length_scale, "
                              f"variance), got {type(node).__name__}")
        known = {"weight", "mean", "kernel", "length_scale", "variance"}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(f"backbone.components[{index}]: unknown key(s) {unknown}; known: {sorted(known)}")
        c = cls(**{k: (str(v) if k == "kernel" else float(v)) for k, v in node.items()})
        if c.kernel not in KERNELS:
            raise ConfigError(f"backbone.components[{index}].kernel={c.kernel!r}: choose one of {', '.join(KERNELS)}")
        if not (c.weight > 0 and c.length_scale > 0 and c.variance > 0):
            raise ConfigError(f"backbone.components[{index}]: weight, length_scale and variance must be positive")
        return c


def kernel_values(kind: str, distance: Tensor, length_scale: float, variance: float) -> Tensor:
    """The stationary covariance k(d) at distances ``distance`` (float64)."""
    d = distance.abs().double() / length_scale
    if kind == "se":
        return variance * torch.exp(-0.5 * d * d)
    if kind == "matern52":
        r = math.sqrt(5.0) * d
        return variance * (1 + r + r * r / 3) * torch.exp(-r)
    raise ConfigError(f"unknown kernel {kind!r}: choose one of {', '.join(KERNELS)}")


def kernel_matrix(component: GPComponent, length: int, nugget: float = 0.0) -> Tensor:
    """Sigma (length, length) of a component on ``length`` consecutive entries (nugget on the diagonal)."""
    idx = torch.arange(length, dtype=torch.float64)
    cov = kernel_values(component.kernel, idx[:, None] - idx[None, :], component.length_scale, component.variance)
    return cov + nugget * torch.eye(length, dtype=torch.float64)


def gaussian_loglik(x: Tensor, means: Tensor, precision: Tensor, logdet: Tensor) -> Tensor:
    """log N(x; means_k, cov_k) for rows ``x`` (B, D), ``means`` (K, D), precisions (K, D, D), log-dets (K,): (B, K)."""
    diff = x[:, None, :] - means[None]  # (B, K, D)
    maha = torch.einsum("bkd,kde,bke->bk", diff, precision, diff)
    return -0.5 * (maha + logdet[None] + x.shape[-1] * LOG_2PI)


def mixture_moments(weights: Tensor, means: Tensor, covs: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and covariance (D, D) of a Gaussian mixture: its moment-matched Gaussian."""
    mean = weights @ means
    centred = means - mean[None]
    cov = torch.einsum("k,kij->ij", weights, covs) + torch.einsum("k,ki,kj->ij", weights, centred, centred)
    return mean, cov


class GaussianProcessMixture(Backbone):
    """A mixture of stationary Gaussian processes on windows of ``length`` entries, with exact ``eps``.

    ``components``: a list of mappings ``{weight, mean, kernel: se|matern52, length_scale, variance}``
    (weights are normalised); ``nugget``: white-noise variance added to every component. See the module
    docstring and docs/wide_gp.md.
    """

    name = "gp"
    analytic = True
    conditional = False

    def __init__(self, length: int = 32, components: Optional[Sequence[Any]] = None, nugget: float = 1e-4,
                 name: str = "gp", resolution: Any = None):
        super().__init__()
        self.name = name
        self.length = int(length)
        if self.length < 2:
            raise ConfigError(f"backbone.length={length} must be at least 2")
        if resolution is not None and int(resolution) != self.length:
            raise ConfigError(f"backbone.resolution={resolution} but backbone.length={self.length}")
        self.nugget = float(nugget)
        if self.nugget < 0:
            raise ConfigError(f"backbone.nugget={nugget} must be >= 0")
        nodes = list(DEFAULT_COMPONENTS if components is None else to_plain(components))
        if not nodes:
            raise ConfigError("backbone.components is empty: give at least one Gaussian process")
        self.components = tuple(GPComponent.from_config(c, i) for i, c in enumerate(nodes))
        self.sample_shape = self.data_shape = (1, 1, self.length)
        self.scheduler_config = dict(SCHEDULER_CONFIG)
        w = torch.tensor([c.weight for c in self.components], dtype=torch.float64)
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.register_buffer("component_means", torch.tensor([c.mean for c in self.components], dtype=torch.float64))
        from diffusers import DDPMScheduler

        ab = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        self.register_buffer("alphas_cumprod", ab.double())
        win = self.canvas_distribution(self.length)
        self.register_buffer("window_covs", win["covs"])  # Sigma_k on one window (K, n, n)
        #: timestep -> (precisions (K, n, n), log-dets (K,)) of A_k = ab Sigma_k + (1-ab) I
        self._noisy: dict[int, tuple[Tensor, Tensor]] = {}
        #: length -> (precisions, log-dets, Cholesky factors) of Sigma_k on that many consecutive entries
        self._clean: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def _apply(self, fn, recurse=True):
        # Follow device moves but never dtype casts (the GP stays float64; eps returns the input's dtype).
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = buf.to(device=fn(buf[:0]).device)
        dev = self.log_weights.device
        self._noisy = {t: tuple(v.to(dev) for v in f) for t, f in self._noisy.items()}
        self._clean = {n: tuple(v.to(dev) for v in f) for n, f in self._clean.items()}
        return self

    # --- the process ---------------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return len(self.components)

    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    def canvas_distribution(self, length: Optional[int] = None) -> dict[str, Tensor]:
        """The mixture on ``length`` consecutive entries (default: one window), float64 on the CPU:
        ``weights`` (K,), ``means`` (K, length), ``covs`` (K, length, length). Stationarity: the entries
        [a, a + n) of it have exactly the window distribution, for every a."""
        length = self.length if length is None else int(length)
        if length < 1:
            raise ConfigError(f"canvas length {length} must be positive")
        means = torch.stack([torch.full((length,), c.mean, dtype=torch.float64) for c in self.components])
        covs = torch.stack([kernel_matrix(c, length, self.nugget) for c in self.components])
        return {"weights": self.weights.cpu(), "means": means, "covs": covs}

    def moments(self, length: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Mean (length,) and covariance (length, length) of the mixture (its moment-matched Gaussian)."""
        d = self.canvas_distribution(length)
        return mixture_moments(d["weights"], d["means"], d["covs"])

    def _clean_factors(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        if length not in self._clean:
            covs = self.canvas_distribution(length)["covs"]
            try:
                chol = torch.linalg.cholesky(covs)
            except RuntimeError:
                raise ConfigError(f"the GP covariance on {length} entries is not positive definite in float64; "
                                  "raise backbone.nugget") from None
            prec = torch.cholesky_inverse(chol)
            logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            self._clean[length] = (prec.to(self.log_weights.device), logdet.to(self.log_weights.device),
                                   chol.to(self.log_weights.device))
        return self._clean[length]

    def _noisy_factors(self, t: int) -> tuple[Tensor, Tensor]:
        if t not in self._noisy:
            ab = float(self.alphas_cumprod[t])
            eye = torch.eye(self.length, dtype=torch.float64, device=self.window_covs.device)
            chol = torch.linalg.cholesky(ab * self.window_covs + (1 - ab) * eye)
            prec = torch.cholesky_inverse(chol)
            logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            self._noisy[t] = (prec, logdet)
        return self._noisy[t]

    # --- the network -----------------------------------------------------------------------------------
    def _flat(self, x: Tensor, what: str = "x", length: Optional[int] = None) -> Tensor:
        n = self.length if length is None else length
        if x.dim() < 2 or x[0].numel() != n or (length is None and tuple(x.shape[1:]) != self.sample_shape):
            raise DataError(f"{what} has shape {tuple(x.shape)}, backbone=gp expects (B, 1, 1, {n})")
        return x.reshape(x.shape[0], -1).to(device=self.log_weights.device, dtype=torch.float64)

    def eps(self, z: Tensor, t: Tensor, cond: Cond = None) -> Tensor:
        """Exact noise prediction -sqrt(1-ab_t) grad log p_t(z) for z (B, 1, 1, n)."""
        zf = self._flat(z, "z")
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1).expand(zf.shape[0])
        out = torch.empty_like(zf)
        for tt in t.unique().tolist():
            rows = t == tt
            ab = float(self.alphas_cumprod[tt])
            prec, logdet = self._noisy_factors(int(tt))
            zr = zf[rows]
            diff = zr[:, None, :] - math.sqrt(ab) * self.component_means[None, :, None]  # (B, K, n)
            solved = torch.einsum("kde,bke->bkd", prec, diff)  # A_k^{-1} (z - sqrt(ab) m_k)
            maha = (diff * solved).sum(-1)
            r = torch.softmax(self.log_weights[None] - 0.5 * (maha + logdet[None]), dim=-1)
            out[rows] = math.sqrt(1 - ab) * (r[:, :, None] * solved).sum(1)
        return out.reshape(z.shape).to(device=z.device, dtype=z.dtype)

    # --- exact densities and draws (any number of consecutive entries) ----------------------------------
    def component_log_likelihoods(self, x: Tensor) -> Tensor:
        """log N(x; m_k, Sigma_k) of rows of consecutive entries: x (B, m) or (B, 1, 1, m) -> (B, K), float64."""
        xf = x.reshape(x.shape[0], -1).to(device=self.log_weights.device, dtype=torch.float64)
        m = xf.shape[1]
        prec, logdet, _ = self._clean_factors(m)
        means = self.component_means[:, None].expand(-1, m)
        return gaussian_loglik(xf, means, prec, logdet)

    def log_responsibilities(self, x: Tensor) -> Tensor:
        """log p(component k | x) of rows of consecutive entries (B, K)."""
        return torch.log_softmax(self.log_weights[None] + self.component_log_likelihoods(x), dim=-1)

    def assign(self, x: Tensor) -> Tensor:
        """The most likely component of each row of consecutive entries (B,), long."""
        return torch.argmax(self.log_weights[None] + self.component_log_likelihoods(x), dim=-1)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of rows of consecutive entries (B,), float64."""
        return torch.logsumexp(self.log_weights[None] + self.component_log_likelihoods(x), dim=-1)

    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               length: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """``n`` exact draws of ``length`` consecutive entries (default one window): (n, 1, 1, length)
        float64 and their components (n,). From ``generator``: n uniforms (the components), then
        n * length float64 normals."""
        length = self.length if length is None else int(length)
        _, _, chol = self._clean_factors(length)
        u = torch.rand((int(n),), generator=generator, dtype=torch.float64)
        k = categorical_from_uniform(self.log_weights[None].cpu().expand(int(n), -1), u)
        noise = torch.randn((int(n), length), generator=generator, dtype=torch.float64).to(chol.device)
        k = k.to(chol.device)
        x = self.component_means[k][:, None] + torch.einsum("bij,bj->bi", chol[k], noise)
        return x.reshape(int(n), 1, 1, length), k

    # --- identity ------------------------------------------------------------------------------------------
    def same_parameters(self, other: "GaussianProcessMixture") -> bool:
        return (self.length == other.length and self.components == other.components
                and self.nugget == other.nugget)

    def extra_repr(self) -> str:
        parts = ", ".join(f"{c.weight:g}*{c.kernel}(mean={c.mean:g}, l={c.length_scale:g}, v={c.variance:g})"
                          for c in self.components)
        return f"length={self.length}, nugget={self.nugget:g}, components=[{parts}]"

