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

**The frame layout (video clips).** With ``frames`` (F) and ``frame_size`` (h, w) a sample is a clip
(1, F, h, w) (``sample_shape``; P = h w pixels per frame) whose windows run along the frame axis (-3, the
process axis; ``axis``). Component k is space-time separable:

    Sigma_k = K_t,k (F x F: the component's stationary kernel over frames)  ⊗  K_s,k (P x P)  +  nugget I

with K_s,k the correlation (variance 1) of a stationary kernel (``spatial_kernel``, ``spatial_length_scale``;
a component may set its own) of the Euclidean pixel distance. Entries are frame-major (index f P + p, the
C-order flattening of (F, h, w)). Stationary in time: any F consecutive frames of a longer clip have the
window law. With K_t = U_t diag(l_t) U_t^T and K_s = U_s diag(l_s) U_s^T (float64 eigendecompositions),
Sigma_k and A_k are diagonal in the basis U_t ⊗ U_s, with eigenvalues

    S_k[f, p] = l_t[f] l_s[p] + nugget,        A_k: ab S_k + (1 - ab)

so A_k^{-1} (z - sqrt(ab) m_k) = U_t ((U_t^T D U_s) / (ab S_k + 1 - ab)) U_s^T, D = z - sqrt(ab) m_k as (F, P),
and log det A_k = sum log(ab S_k + 1 - ab): no dense F P x F P matrix anywhere (``canvas_distribution``
still builds the dense one, ``torch.kron``, for the metrics). The same basis gives the clean densities and
the exact draws x = m_k + U_t (sqrt(S_k) * noise) U_s^T of any number of frames. Without ``frames`` the
backbone is the 1-D field above, unchanged.

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
    #: the frame layout only: this component's spatial kernel and length scale (pixels); None = the backbone's
    spatial_kernel: Optional[str] = None
    spatial_length_scale: Optional[float] = None

    @classmethod
    def from_config(cls, node: Any, index: int) -> "GPComponent":
        if isinstance(node, GPComponent):
            return node
        if not isinstance(node, Mapping):
            raise ConfigError(f"backbone.components[{index}] must be a mapping (weight, mean, kernel, length_scale, "
                              f"variance), got {type(node).__name__}")
        known = {"weight", "mean", "kernel", "length_scale", "variance", "spatial_kernel", "spatial_length_scale"}
        unknown = sorted(set(node) - known)
        if unknown:
            raise ConfigError(f"backbone.components[{index}]: unknown key(s) {unknown}; known: {sorted(known)}")
        c = cls(**{k: (v if v is None else str(v) if k in ("kernel", "spatial_kernel") else float(v))
                   for k, v in node.items()})
        for key in ("kernel", "spatial_kernel"):
            kind = getattr(c, key)
            if kind is not None and kind not in KERNELS:
                raise ConfigError(f"backbone.components[{index}].{key}={kind!r}: choose one of {', '.join(KERNELS)}")
        if not (c.weight > 0 and c.length_scale > 0 and c.variance > 0):
            raise ConfigError(f"backbone.components[{index}]: weight, length_scale and variance must be positive")
        if c.spatial_length_scale is not None and not c.spatial_length_scale > 0:
            raise ConfigError(f"backbone.components[{index}]: spatial_length_scale must be positive")
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


def pixel_grid(frame_size: Sequence[int]) -> Tensor:
    """(h w, 2) float64 pixel coordinates (row, column) of a frame, C order."""
    h, w = (int(v) for v in frame_size)
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)


def spatial_matrix(kind: str, frame_size: Sequence[int], length_scale: float) -> Tensor:
    """K_s (P, P): the correlation (variance 1) of the pixels of a frame at their Euclidean distance."""
    xy = pixel_grid(frame_size)
    dist = torch.cdist(xy, xy)
    return kernel_values(kind, dist, length_scale, 1.0)


def kron_rotate(d: Tensor, ut: Tensor, us: Tensor, transpose: bool) -> Tensor:
    """(U_t ⊗ U_s)^T d (``transpose``) or (U_t ⊗ U_s) d for rows d (B, K, F, P) and per-component bases
    ut (K, F, F), us (K, P, P)."""
    if transpose:
        return torch.einsum("kgf,bkgq,kqp->bkfp", ut, d, us)
    return torch.einsum("kfg,bkgq,kpq->bkfp", ut, d, us)


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

    The frame layout (``frames`` given): clips (1, frames, h, w), ``frame_size`` = (h, w) (an int: square),
    each component's kernel over the frames times a spatial correlation ``spatial_kernel`` of
    ``spatial_length_scale`` pixels (a component's ``spatial_kernel`` / ``spatial_length_scale`` win);
    ``length`` is then the frame count (left null or equal to ``frames``).
    """

    name = "gp"
    analytic = True
    conditional = False

    def __init__(self, length: Optional[int] = None, components: Optional[Sequence[Any]] = None, nugget: float = 1e-4,
                 name: str = "gp", resolution: Any = None, frames: Optional[int] = None,
                 frame_size: Any = None, spatial_kernel: str = "se", spatial_length_scale: float = 1.5):
        super().__init__()
        self.name = name
        if frames is not None and length is not None and int(length) != int(frames):
            raise ConfigError(f"backbone.length={length} but backbone.frames={frames}: with frames, length is the "
                              "frame count (leave it null)")
        self.length = int(frames if frames is not None else 32 if length is None else length)
        if self.length < 2:
            raise ConfigError(f"backbone.{'frames' if frames is not None else 'length'}={self.length} must be at least 2")
        #: (h, w) of a frame in the frame layout, else None (1-D fields)
        self.frame_size: Optional[tuple[int, int]] = None
        if frames is not None:
            size = to_plain(frame_size) if frame_size is not None else 4
            size = [size, size] if isinstance(size, int) else list(size)
            if len(size) != 2 or any(isinstance(v, bool) or int(v) != v or int(v) < 1 for v in size):
                raise ConfigError(f"backbone.frame_size={frame_size!r}: expected [height, width] (positive integers)")
            self.frame_size = (int(size[0]), int(size[1]))
        elif frame_size is not None:
            raise ConfigError("backbone.frame_size needs backbone.frames (the frame layout)")
        if resolution is not None and int(resolution) != (self.length if self.frame_size is None else self.frame_size[0]):
            what = "length" if self.frame_size is None else "frame_size[0]"
            raise ConfigError(f"backbone.resolution={resolution} but backbone.{what}="
                              f"{self.length if self.frame_size is None else self.frame_size[0]}")
        if spatial_kernel not in KERNELS:
            raise ConfigError(f"backbone.spatial_kernel={spatial_kernel!r}: choose one of {', '.join(KERNELS)}")
        if not float(spatial_length_scale) > 0:
            raise ConfigError(f"backbone.spatial_length_scale={spatial_length_scale} must be positive")
        self.spatial_kernel, self.spatial_length_scale = str(spatial_kernel), float(spatial_length_scale)
        self.nugget = float(nugget)
        if self.nugget < 0:
            raise ConfigError(f"backbone.nugget={nugget} must be >= 0")
        nodes = list(DEFAULT_COMPONENTS if components is None else to_plain(components))
        if not nodes:
            raise ConfigError("backbone.components is empty: give at least one Gaussian process")
        self.components = tuple(GPComponent.from_config(c, i) for i, c in enumerate(nodes))
        if self.frame_size is None:
            self.sample_shape = self.data_shape = (1, 1, self.length)
        else:
            self.sample_shape = self.data_shape = (1, self.length, *self.frame_size)
        self.scheduler_config = dict(SCHEDULER_CONFIG)
        w = torch.tensor([c.weight for c in self.components], dtype=torch.float64)
        self.register_buffer("log_weights", (w / w.sum()).log())
        self.register_buffer("component_means", torch.tensor([c.mean for c in self.components], dtype=torch.float64))
        from diffusers import DDPMScheduler

        ab = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        self.register_buffer("alphas_cumprod", ab.double())
        if self.frame_size is not None:  # K_s of every component, eigendecomposed (float64)
            ls, us = [], []
            for c in self.components:
                kind = c.spatial_kernel or self.spatial_kernel
                scale = c.spatial_length_scale if c.spatial_length_scale is not None else self.spatial_length_scale
                lam, vec = torch.linalg.eigh(spatial_matrix(kind, self.frame_size, scale))
                ls.append(lam)
                us.append(vec)
            self.register_buffer("spatial_values", torch.stack(ls))    # (K, P)
            self.register_buffer("spatial_vectors", torch.stack(us))   # (K, P, P)
        win = self.canvas_distribution(self.length)
        self.register_buffer("window_covs", win["covs"])  # Sigma_k on one window (K, n, n)
        #: timestep -> (precisions (K, n, n), log-dets (K,)) of A_k = ab Sigma_k + (1-ab) I
        #: (the frame layout: (eigenvalues of A_k (K, F, P), log-dets (K,)))
        self._noisy: dict[int, tuple[Tensor, Tensor]] = {}
        #: length -> (precisions, log-dets, Cholesky factors) of Sigma_k on that many consecutive entries
        #: (the frame layout: (U_t (K, L, L), eigenvalues S_k (K, L, P), log-dets (K,)) on L frames)
        self._clean: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        if self.frame_size is not None:
            bad = [k for k in range(self.num_components) if not bool((self._clean_factors(self.length)[1][k] > 0).all())]
            if bad:
                raise ConfigError(f"the GP covariance of component(s) {bad} is not positive definite in float64; "
                                  "raise backbone.nugget")

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

    @property
    def pixels(self) -> int:
        """Entries per position along the process axis: h w in the frame layout, else 1."""
        return 1 if self.frame_size is None else self.frame_size[0] * self.frame_size[1]

    @property
    def axis(self) -> int:
        """The sample axis the process runs along (a windowed task's ``axis``): -3 (frames) or -1."""
        return -1 if self.frame_size is None else -3

    def temporal_matrix(self, component: GPComponent, length: int) -> Tensor:
        """K_t (length, length) of a component over ``length`` frames (no nugget; the frame layout)."""
        return kernel_matrix(component, length, 0.0)

    def spatial_covariances(self) -> Tensor:
        """K_s (K, P, P) of every component (the frame layout)."""
        return torch.stack([(vec * lam[None]) @ vec.T for lam, vec in
                            zip(self.spatial_values.cpu(), self.spatial_vectors.cpu())])

    def canvas_distribution(self, length: Optional[int] = None) -> dict[str, Tensor]:
        """The mixture on ``length`` consecutive entries (default: one window), float64 on the CPU:
        ``weights`` (K,), ``means`` (K, length), ``covs`` (K, length, length). Stationarity: the entries
        [a, a + n) of it have exactly the window distribution, for every a. The frame layout: ``length``
        frames, every frame's P pixels (frame-major): means (K, length P), covs (K, length P, length P)."""
        length = self.length if length is None else int(length)
        if length < 1:
            raise ConfigError(f"canvas length {length} must be positive")
        if self.frame_size is not None:  # entries frame-major: (length * P,), Sigma_k = K_t ⊗ K_s + nugget I
            m = length * self.pixels
            means = torch.stack([torch.full((m,), c.mean, dtype=torch.float64) for c in self.components])
            eye = torch.eye(m, dtype=torch.float64)
            covs = torch.stack([torch.kron(self.temporal_matrix(c, length), ks) + self.nugget * eye
                                for c, ks in zip(self.components, self.spatial_covariances())])
            return {"weights": self.weights.cpu(), "means": means, "covs": covs}
        means = torch.stack([torch.full((length,), c.mean, dtype=torch.float64) for c in self.components])
        covs = torch.stack([kernel_matrix(c, length, self.nugget) for c in self.components])
        return {"weights": self.weights.cpu(), "means": means, "covs": covs}

    def moments(self, length: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Mean (length,) and covariance (length, length) of the mixture (its moment-matched Gaussian)."""
        d = self.canvas_distribution(length)
        return mixture_moments(d["weights"], d["means"], d["covs"])

    def _clean_factors(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        if self.frame_size is not None:
            return self._clean_kron(length)
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

    def _clean_kron(self, length: int) -> tuple[Tensor, Tensor, Tensor]:
        """The frame layout on ``length`` frames: U_t (K, L, L), S_k (K, L, P) (the eigenvalues of Sigma_k in
        the basis U_t ⊗ U_s) and log det Sigma_k (K,)."""
        if length not in self._clean:
            dev = self.log_weights.device
            ut, st = [], []
            for k, c in enumerate(self.components):
                lam, vec = torch.linalg.eigh(self.temporal_matrix(c, length))
                ut.append(vec)
                st.append(lam[:, None] * self.spatial_values[k].cpu()[None, :] + self.nugget)
            ut, st = torch.stack(ut), torch.stack(st)
            logdet = st.clamp_min(1e-300).log().sum((-2, -1))
            self._clean[length] = (ut.to(dev), st.to(dev), logdet.to(dev))
        return self._clean[length]

    def _noisy_factors(self, t: int) -> tuple[Tensor, Tensor]:
        if self.frame_size is not None:
            if t not in self._noisy:
                ab = float(self.alphas_cumprod[t])
                _, st, _ = self._clean_kron(self.length)
                eig = ab * st + (1 - ab)  # A_k's eigenvalues (K, F, P)
                self._noisy[t] = (eig, eig.log().sum((-2, -1)))
            return self._noisy[t]
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
        if x.dim() < 2 or x[0].numel() != n * self.pixels or (length is None and tuple(x.shape[1:]) != self.sample_shape):
            want = f"(B, 1, 1, {n})" if self.frame_size is None else f"(B, 1, {n}, {self.frame_size[0]}, {self.frame_size[1]})"
            raise DataError(f"{what} has shape {tuple(x.shape)}, backbone=gp expects {want}")
        return x.reshape(x.shape[0], -1).to(device=self.log_weights.device, dtype=torch.float64)

    def eps(self, z: Tensor, t: Tensor, cond: Cond = None) -> Tensor:
        """Exact noise prediction -sqrt(1-ab_t) grad log p_t(z) for z (B, 1, 1, n)."""
        zf = self._flat(z, "z")
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1).expand(zf.shape[0])
        if self.frame_size is not None:
            return self._eps_kron(zf, t).reshape(z.shape).to(device=z.device, dtype=z.dtype)
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

    def _eps_kron(self, zf: Tensor, t: Tensor) -> Tensor:
        """eps of the frame layout: rows zf (B, F P), timesteps t (B,), in the Kronecker eigenbasis."""
        ut, _, _ = self._clean_kron(self.length)
        us = self.spatial_vectors
        out = torch.empty_like(zf)
        for tt in t.unique().tolist():
            rows = t == tt
            ab = float(self.alphas_cumprod[tt])
            eig, logdet = self._noisy_factors(int(tt))
            zr = zf[rows].reshape(-1, 1, self.length, self.pixels)
            diff = zr - math.sqrt(ab) * self.component_means[None, :, None, None]  # (B, K, F, P)
            rot = kron_rotate(diff, ut, us, transpose=True) / eig[None]  # A_k^{-1} diff, in the eigenbasis
            maha = (rot * rot * eig[None]).sum((-2, -1))
            r = torch.softmax(self.log_weights[None] - 0.5 * (maha + logdet[None]), dim=-1)
            solved = kron_rotate(r[:, :, None, None] * rot, ut, us, transpose=False).sum(1)
            out[rows] = math.sqrt(1 - ab) * solved.reshape(solved.shape[0], -1)
        return out

    # --- exact densities and draws (any number of consecutive entries) ----------------------------------
    def component_log_likelihoods(self, x: Tensor) -> Tensor:
        """log N(x; m_k, Sigma_k) of rows of consecutive entries: x (B, m) or (B, 1, 1, m) -> (B, K), float64."""
        xf = x.reshape(x.shape[0], -1).to(device=self.log_weights.device, dtype=torch.float64)
        if self.frame_size is not None:
            return self._loglik_kron(xf)
        m = xf.shape[1]
        prec, logdet, _ = self._clean_factors(m)
        means = self.component_means[:, None].expand(-1, m)
        return gaussian_loglik(xf, means, prec, logdet)

    def _loglik_kron(self, xf: Tensor) -> Tensor:
        """log N(x; m_k, Sigma_k) of rows (B, L P) of L consecutive frames (the frame layout)."""
        if xf.shape[1] % self.pixels:
            raise DataError(f"rows of {xf.shape[1]} entries are not whole frames of {self.pixels} pixels")
        length = xf.shape[1] // self.pixels
        ut, st, logdet = self._clean_kron(length)
        diff = xf.reshape(-1, 1, length, self.pixels) - self.component_means[None, :, None, None]
        rot = kron_rotate(diff, ut, self.spatial_vectors, transpose=True)
        maha = (rot * rot / st[None]).sum((-2, -1))
        return -0.5 * (maha + logdet[None] + xf.shape[1] * LOG_2PI)

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
        n * length float64 normals. The frame layout: ``length`` frames, (n, 1, length, h, w), from n
        uniforms then n * length * P normals (x = m_k + U_t (sqrt(S_k) * noise) U_s^T)."""
        length = self.length if length is None else int(length)
        if self.frame_size is not None:
            return self._sample_kron(int(n), generator, length)
        _, _, chol = self._clean_factors(length)
        u = torch.rand((int(n),), generator=generator, dtype=torch.float64)
        k = categorical_from_uniform(self.log_weights[None].cpu().expand(int(n), -1), u)
        noise = torch.randn((int(n), length), generator=generator, dtype=torch.float64).to(chol.device)
        k = k.to(chol.device)
        x = self.component_means[k][:, None] + torch.einsum("bij,bj->bi", chol[k], noise)
        return x.reshape(int(n), 1, 1, length), k

    def _sample_kron(self, n: int, generator: Optional[torch.Generator], length: int) -> tuple[Tensor, Tensor]:
        ut, st, _ = self._clean_kron(length)
        u = torch.rand((n,), generator=generator, dtype=torch.float64)
        k = categorical_from_uniform(self.log_weights[None].cpu().expand(n, -1), u)
        noise = torch.randn((n, length, self.pixels), generator=generator, dtype=torch.float64).to(ut.device)
        k = k.to(ut.device)
        scaled = st[k].clamp_min(0).sqrt() * noise  # (n, L, P): noise scaled in the eigenbasis of each row's component
        x = torch.einsum("nfg,ngq,npq->nfp", ut[k], scaled, self.spatial_vectors[k])
        x = x + self.component_means[k][:, None, None]
        return x.reshape(n, 1, length, *self.frame_size), k

    # --- identity ------------------------------------------------------------------------------------------
    def same_parameters(self, other: "GaussianProcessMixture") -> bool:
        return (self.length == other.length and self.components == other.components
                and self.nugget == other.nugget and self.frame_size == other.frame_size
                and (self.frame_size is None or (self.spatial_kernel, self.spatial_length_scale)
                     == (other.spatial_kernel, other.spatial_length_scale)))

    def extra_repr(self) -> str:
        parts = ", ".join(f"{c.weight:g}*{c.kernel}(mean={c.mean:g}, l={c.length_scale:g}, v={c.variance:g})"
                          for c in self.components)
        if self.frame_size is not None:
            return (f"frames={self.length}, frame_size={self.frame_size}, spatial={self.spatial_kernel}"
                    f"(l={self.spatial_length_scale:g}), nugget={self.nugget:g}, components=[{parts}]")
        return f"length={self.length}, nugget={self.nugget:g}, components=[{parts}]"

