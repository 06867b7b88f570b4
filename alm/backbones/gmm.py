"""An exact Gaussian-mixture "backbone": the one place where a sampler can be compared with the truth.

Notation (docs/method.md §1 for the diffusion symbols):

| symbol      | here                    | meaning                                                       |
|-------------|-------------------------|---------------------------------------------------------------|
| K           | ``num_components``      | number of mixture components                                  |
| D           | ``C*H*W``               | entries of one image; every tensor below is flattened to D    |
| pi_k        | ``log_weights.exp()``   | component weights                                             |
| mu_k        | ``means[k]``            | component mean (D,)                                           |
| s_k         | ``stds[k]``             | component std per entry (D,): the covariance is diag(s_k^2)   |
| ab          | ``alphas_cumprod[t]``   | cumulative alpha of the DDPM table at timestep t              |
| M           | ``mask``                | 1 = unobserved (to generate), 0 = observed                    |
| O, U        |                         | the observed / unobserved entries of an image                 |

Data: x0 ~ sum_k pi_k N(mu_k, diag s_k^2). Forward process x_t = sqrt(ab) x0 + sqrt(1-ab) n, so

    p_t = sum_k pi_k N(sqrt(ab) mu_k, diag(v_k)),   v_k = ab s_k^2 + (1 - ab)
    eps(z, t) = -sqrt(1-ab) grad log p_t(z) = sqrt(1-ab) sum_k r_k(z) (z - sqrt(ab) mu_k) / v_k

with responsibilities r_k(z) = softmax_k(log pi_k + log N(z; sqrt(ab) mu_k, v_k)) — exact at every t.

Inpainting posterior: with diagonal covariances the entries of a component are independent, so

    p(x_U | x_O) = sum_k w_k N(x_U; mu_k[U], diag s_k[U]^2),   w_k ∝ pi_k N(x_O; mu_k[O], diag s_k[O]^2).

Class conditioning (``num_classes = C > 0``): component k belongs to class ``k % C``; the label c
restricts the mixture to its class (weights renormalised), label -1 is the full mixture.

The mixture is built from a ``MixtureSpec`` (the config values, shared with ``dataset=gmm``); the
default is the grouped "hard" mixture described in docs/gmm.md. All math is done in float64.
The exact metrics of completions are ``alm.gmm_metrics`` (the math) and ``alm.metrics.gmm`` (``metrics=gmm``);
they import this module, never the other way round.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from alm.backbones.base import Backbone, Cond
from alm.config import to_plain
from alm.errors import ConfigError, DataError
from alm.rng import SampleGenerators

Tensor = torch.Tensor

#: plain DDPM linear-beta table (Ho et al. 2020), 1000 steps
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "steps_offset": 0, "set_alpha_to_one": True, "clip_sample": False, "prediction_type": "epsilon",
}

LOG_2PI = math.log(2 * math.pi)


# --- configuration ------------------------------------------------------------------------------

@dataclass
class MixtureSpec:
    """The config values that define a mixture (``backbone.mixture`` in the yaml; see docs/gmm.md).

    Grouped construction (``groups = G > 0``): K = G * len(member_weights) components, component
    ``k = g * m + j`` is member j of group g. Members of a group share their mean on the ``shared``
    region and have independent means elsewhere; the groups' shared means are a common random pattern
    plus group deviations scaled so that the two closest groups are ``group_gap`` stds apart there.
    Ungrouped (``groups = 0``): ``num_components`` independent random means.
    ``means`` (an absolute path to a .pt/.npy file of shape (K, C, H, W) or (K, D)) replaces the
    random means; the groups then only define the weights.
    """

    shape: tuple[int, ...] = (1, 8, 8)
    groups: int = 4
    member_weights: tuple[float, ...] = (0.5, 0.3, 0.2)
    group_weights: Optional[tuple[float, ...]] = None  # None = equal
    num_components: Optional[int] = None  # ungrouped only
    weights: Optional[tuple[float, ...]] = None  # explicit K weights (override the grouped product)
    std: Any = 0.15  # scalar | K scalars | per entry (K, C, H, W) or (C, H, W) | path to .pt/.npy
    means: Optional[str] = None
    means_seed: int = 0
    mean_range: float = 0.75  # random means are uniform in [-mean_range, mean_range]
    shared: str = "center"  # "center" (centre square of side shared_size) or "none"
    shared_size: int = 4
    group_gap: float = 6.0  # distance of the two closest groups on the shared region, in stds
    num_classes: int = 0

    @classmethod
    def from_config(cls, cfg: Any = None, **overrides: Any) -> "MixtureSpec":
        """A spec from a MixtureSpec, a mapping (dict or DictConfig) and/or keyword values."""
        if isinstance(cfg, MixtureSpec):
            values = asdict(cfg)
        elif cfg is None:
            values = {}
        elif isinstance(cfg, Mapping):
            values = dict(to_plain(cfg))
        else:
            raise ConfigError(f"backbone.mixture must be a mapping of mixture parameters, got {type(cfg).__name__}")
        values.update(overrides)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown Gaussian-mixture parameter(s) {unknown}; known: {sorted(known)}")
        spec = cls(**values)
        spec.shape = tuple(int(s) for s in spec.shape)
        spec.member_weights = tuple(float(w) for w in spec.member_weights)
        for name in ("group_weights", "weights"):
            v = getattr(spec, name)
            if v is not None:
                setattr(spec, name, tuple(float(w) for w in v))
        return spec



def _load_array(path: str, what: str) -> Tensor:
    p = Path(str(path)).expanduser()
    if not p.is_absolute():
        raise ConfigError(f"{what} file must be an absolute path (write ${{paths.root}}/...), got {path!r}")
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    if p.suffix == ".npy":
        return torch.from_numpy(np.load(p)).double()
    if p.suffix == ".pt":
        return torch.as_tensor(torch.load(p, map_location="cpu", weights_only=True)).double()
    raise ConfigError(f"{what} file must be .pt or .npy, got {p.name}")


def shared_region(shape: Sequence[int], shared: str, size: int) -> Tensor:
    """The (D,) bool region on which members of a group share their mean."""
    c, h, w = shape
    region = torch.zeros(c, h, w, dtype=torch.bool)
    if shared == "none" or size == 0:
        return region.flatten()
    if shared != "center":
        raise ConfigError(f"backbone.mixture.shared must be 'center' or 'none', got {shared!r}")
    if not 0 < size <= min(h, w):
        raise ConfigError(f"backbone.mixture.shared_size={size} must be between 1 and {min(h, w)}")
    top, left = (h - size) // 2, (w - size) // 2
    region[:, top : top + size, left : left + size] = True
    return region.flatten()


def _weights(spec: MixtureSpec, K: int, G: int) -> Tensor:
    if spec.weights is not None:
        w = torch.tensor(spec.weights, dtype=torch.float64)
        if w.numel() != K:
            raise ConfigError(f"backbone.mixture.weights has {w.numel()} entries for {K} components")
    elif G > 0:
        m = len(spec.member_weights)
        gw = torch.tensor(spec.group_weights if spec.group_weights is not None else [1.0] * G, dtype=torch.float64)
        if gw.numel() != G:
            raise ConfigError(f"backbone.mixture.group_weights has {gw.numel()} entries for {G} groups")
        mw = torch.tensor(spec.member_weights, dtype=torch.float64)
        w = (gw[:, None] / gw.sum() * (mw / mw.sum())[None, :]).reshape(G * m)
    else:
        w = torch.ones(K, dtype=torch.float64)
    if not bool((w > 0).all()):
        raise ConfigError("Gaussian-mixture weights must all be positive")
    return w / w.sum()


def _stds(spec: MixtureSpec, K: int, shape: tuple[int, ...]) -> Tensor:
    s = _load_array(spec.std, "backbone.mixture.std") if isinstance(spec.std, str) else torch.as_tensor(spec.std, dtype=torch.float64)
    D = int(np.prod(shape))
    if s.dim() == 0:
        s = s.expand(K, D)
    elif s.dim() == 1 and s.numel() == K:
        s = s[:, None].expand(K, D)
    elif tuple(s.shape) == tuple(shape):
        s = s.reshape(1, D).expand(K, D)
    elif tuple(s.shape) in ((K, *shape), (K, D)):
        s = s.reshape(K, D)
    else:
        raise ConfigError(f"backbone.mixture.std has shape {tuple(s.shape)}: use a scalar, {K} values, {shape} or {(K, *shape)}")
    if not bool((s > 0).all()):
        raise ConfigError("backbone.mixture.std must be positive")
    return s.clone().contiguous()


def build_mixture(spec: MixtureSpec) -> dict[str, Tensor]:
    """Means (K, D), stds (K, D), log-weights (K,), group of each component (K,) and the shared region (D,)."""
    shape = spec.shape
    if len(shape) != 3:
        raise ConfigError(f"backbone.mixture.shape must be (C, H, W), got {list(shape)}")
    D = int(np.prod(shape))
    G = int(spec.groups)
    m = len(spec.member_weights)
    region = shared_region(shape, spec.shared, int(spec.shared_size)) if G > 0 else torch.zeros(D, dtype=torch.bool)
    file_means = _load_array(spec.means, "backbone.mixture.means") if spec.means else None
    if file_means is not None:
        K = int(file_means.shape[0])
        if file_means.reshape(K, -1).shape[1] != D:
            raise ConfigError(f"backbone.mixture.means has shape {tuple(file_means.shape)}, expected (K, {', '.join(map(str, shape))})")
    elif G > 0:
        K = G * m
    elif spec.num_components:
        K = int(spec.num_components)
    else:
        raise ConfigError("backbone.mixture needs groups > 0, num_components > 0 or a means file")
    if G > 0 and K != G * m:
        raise ConfigError(f"backbone.mixture: {K} means for {G} groups x {m} members")
    if G == 0 and spec.num_components and K != int(spec.num_components):
        raise ConfigError(f"backbone.mixture: {K} means for num_components={spec.num_components}")
    stds = _stds(spec, K, shape)
    group = torch.arange(K) // m if G > 0 else torch.arange(K)

    if file_means is not None:
        means = file_means.reshape(K, D).clone()
    else:
        gen = torch.Generator().manual_seed(int(spec.means_seed))
        R = float(spec.mean_range)
        means = (2 * torch.rand(K, D, generator=gen, dtype=torch.float64) - 1) * R
        if G > 0 and bool(region.any()):
            base = (2 * torch.rand(D, generator=gen, dtype=torch.float64) - 1) * R
            dev = (2 * torch.rand(G, D, generator=gen, dtype=torch.float64) - 1) * R
            dev = (dev - dev.mean(0)) * region
            if G > 1:
                # scale the group deviations so that the closest two groups are group_gap stds apart
                unit = stds[:, region].pow(2).mean().sqrt()
                closest = torch.pdist(dev[:, region]).min()
                dev = dev * (float(spec.group_gap) * unit / closest)
            centre = base + dev  # (G, D)
            means = torch.where(region, centre[group], means)
    weights = _weights(spec, K, G)
    C = int(spec.num_classes)
    if not 0 <= C <= K:
        raise ConfigError(f"backbone.mixture.num_classes={C} must be between 0 and the {K} components")
    return {"means": means, "stds": stds, "log_weights": weights.log(), "group": group, "shared": region}


# --- the math: pure functions of float64 tensors (rows are flattened images) --------------------

def diag_gaussian_loglik(x: Tensor, means: Tensor, var: Tensor, keep: Optional[Tensor] = None) -> Tensor:
    """log N(x; mu_k, diag var_k) summed over the entries where ``keep`` is 1: (B, D) x (K, D) -> (B, K).

    Expanded into matrix products so that memory stays O(B K + K D + B D).
    """
    keep = torch.ones_like(x) if keep is None else keep.to(x.dtype)
    inv = 1.0 / var
    return -0.5 * (
        (keep * x * x) @ inv.T - 2 * (keep * x) @ (means * inv).T + keep @ (means * means * inv + torch.log(var) + LOG_2PI).T
    )


def mixture_eps(z: Tensor, ab: float, log_w: Tensor, means: Tensor, stds: Tensor) -> Tensor:
    """Exact eps of the noised mixture at level ``ab``: sqrt(1-ab) sum_k r_k (z - sqrt(ab) mu_k) / v_k.

    ``z`` (B, D); ``log_w`` (B, K) per-sample log-weights (-inf excludes a component).
    """
    v = ab * stds * stds + (1.0 - ab)  # (K, D)
    mu = math.sqrt(ab) * means
    r = torch.softmax(log_w + diag_gaussian_loglik(z, mu, v), dim=-1)  # (B, K) responsibilities
    return math.sqrt(1.0 - ab) * (z * (r @ (1.0 / v)) - r @ (mu / v))


def categorical_from_uniform(log_w: Tensor, u: Tensor) -> Tensor:
    """Inverse-CDF draw of one component per row of ``log_w`` (B, K) from uniforms ``u`` (B,)."""
    cdf = torch.cumsum(torch.softmax(log_w, dim=-1), dim=-1)
    return (cdf < u.to(cdf)[:, None]).sum(-1).clamp_max(log_w.shape[-1] - 1)


# --- the backbone ---------------------------------------------------------------------------------

class GaussianMixture(Backbone):
    """A diagonal Gaussian mixture over (C, H, W) images with exact ``eps`` and exact posteriors.

    ``GaussianMixture(mixture)`` with ``mixture`` a ``MixtureSpec`` or a mapping of its fields; keyword
    values override it (``GaussianMixture(std=0.1)``). See ``MixtureSpec`` and docs/gmm.md.
    """

    name = "gmm"

    analytic = True  # eps in closed form: reading an inversion from disk is slower than recomputing it

    def __init__(self, mixture: Any = None, name: str = "gmm", resolution: Any = None, **params: Any):
        super().__init__()
        self.spec = MixtureSpec.from_config(mixture, **params)
        self.name = name
        self.sample_shape = self.data_shape = tuple(self.spec.shape)
        if resolution is not None and int(resolution) != self.data_shape[-1]:  # the config's label for data sets
            raise ConfigError(f"backbone.resolution={resolution} but the mixture's shape is {list(self.data_shape)}")
        self.scheduler_config = dict(SCHEDULER_CONFIG)
        self.num_classes = int(self.spec.num_classes)
        self.conditional = self.num_classes > 0
        built = build_mixture(self.spec)
        K = built["means"].shape[0]
        self.register_buffer("means", built["means"])
        self.register_buffer("stds", built["stds"])
        self.register_buffer("log_weights", built["log_weights"])
        self.register_buffer("group", built["group"])
        self.register_buffer("shared", built["shared"])
        classes = torch.arange(K) % self.num_classes if self.conditional else torch.full((K,), -1)
        self.register_buffer("component_class", classes)
        from diffusers import DDPMScheduler

        ab = DDPMScheduler.from_config(self.scheduler_config).alphas_cumprod
        self.register_buffer("alphas_cumprod", ab.double())

    def _apply(self, fn, recurse=True):
        # Follow device moves but never dtype casts: the mixture stays float64 even if a runner
        # casts backbones to fp16/fp32 (``eps`` returns the input's dtype anyway).
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = buf.to(device=fn(buf[:0]).device)
        return self

    # --- sizes and conditions ---------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    def input_files(self) -> dict[str, list]:
        """A means file (``backbone.mixture.means``) is hashed by content into a run's fingerprint."""
        return {"content": [Path(str(self.spec.means)).expanduser()]} if self.spec.means else {}

    def make_cond(self, labels: Any, batch: int) -> Cond:
        """Class labels as a long tensor (B,); None for an unconditional mixture."""
        if not self.conditional:
            return None
        if labels is None or any(l is None for l in labels):
            raise ConfigError("backbone=gmm with num_classes > 0 needs class labels (dataset=gmm provides them)")
        cond = torch.as_tensor([int(l) for l in labels], dtype=torch.long, device=self.device)
        if cond.numel() != batch:
            raise DataError(f"got {cond.numel()} labels for a batch of {batch}")
        return cond

    def null_cond(self, batch: int) -> Cond:
        """Label -1 (the full mixture), or None for an unconditional mixture."""
        return torch.full((batch,), -1, dtype=torch.long, device=self.device) if self.conditional else None

    def class_log_weights(self, cond: Cond, batch: int) -> Tensor:
        """Per-sample log-weights (B, K): the mixture restricted to each sample's class (-1 = all)."""
        log_w = self.log_weights[None].expand(batch, -1)
        if cond is None or not self.conditional:
            return log_w
        c = torch.as_tensor(cond, device=self.log_weights.device).long().reshape(-1)
        if c.numel() != batch:
            raise DataError(f"got {c.numel()} labels for a batch of {batch}")
        if bool(((c < -1) | (c >= self.num_classes)).any()):
            raise DataError(f"class labels must be in [-1, {self.num_classes - 1}], got {c.unique().tolist()}")
        member = (c[:, None] == -1) | (self.component_class[None, :] == c[:, None])
        log_w = torch.where(member, log_w, torch.full_like(log_w, -math.inf))
        return log_w - torch.logsumexp(log_w, dim=-1, keepdim=True)

    def _flat(self, x: Tensor, what: str = "x") -> Tensor:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise DataError(f"{what} has shape {tuple(x.shape)}, backbone=gmm expects (B, {', '.join(map(str, self.sample_shape))})")
        return x.reshape(x.shape[0], -1).to(device=self.means.device, dtype=torch.float64)

    def observed_entries(self, mask: Tensor, like: Tensor) -> Tensor:
        """(B, D) float64: 1 = observed entry (mask is 1 = unobserved; broadcast to the image)."""
        try:
            m = torch.broadcast_to(mask.to(self.means.device), like.shape)
        except RuntimeError:
            raise DataError(f"mask of shape {tuple(mask.shape)} does not broadcast to images of shape {tuple(like.shape)}") from None
        return (m <= 0.5).reshape(like.shape[0], -1).double()

    # --- the network ------------------------------------------------------------------------------
    def eps(self, z: Tensor, t: Tensor, cond: Cond) -> Tensor:
        """Exact noise prediction -sqrt(1-ab_t) grad log p_t(z) (of the class's mixture when conditioned)."""
        zf = self._flat(z, "z")
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1).expand(zf.shape[0])
        log_w = self.class_log_weights(cond, zf.shape[0])
        out = torch.empty_like(zf)
        for tt in t.unique().tolist():  # the core evaluates one timestep per call; loop for generality
            rows = t == tt
            ab = float(self.alphas_cumprod[tt])
            out[rows] = mixture_eps(zf[rows], ab, log_w[rows], self.means, self.stds)
        return out.reshape(z.shape).to(device=z.device, dtype=z.dtype)

    # --- exact densities --------------------------------------------------------------------------
    def component_log_likelihoods(self, x: Tensor) -> Tensor:
        """log N(x; mu_k, diag s_k^2) of full images: (B, K), float64."""
        return diag_gaussian_loglik(self._flat(x), self.means, self.stds**2)

    def log_prob(self, x: Tensor, cond: Cond = None) -> Tensor:
        """log p(x) of full images (B,), float64 (the class's mixture if ``cond`` is given)."""
        return torch.logsumexp(self.class_log_weights(cond, x.shape[0]) + self.component_log_likelihoods(x), dim=-1)

    def assign(self, x: Tensor, cond: Cond = None) -> Tensor:
        """The most likely component of each full image: argmax_k pi_k N(x; mu_k, s_k^2) (B,), long."""
        return torch.argmax(self.class_log_weights(cond, x.shape[0]) + self.component_log_likelihoods(x), dim=-1)

    def posterior_log_weights(self, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> Tensor:
        """log p(component k | observed entries of x_obs): (B, K), float64."""
        x = self._flat(x_obs, "x_obs")
        keep = self.observed_entries(mask, x_obs)
        ll = diag_gaussian_loglik(x, self.means, self.stds**2, keep)
        return torch.log_softmax(self.class_log_weights(cond, x.shape[0]) + ll, dim=-1)

    def posterior_weights(self, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> Tensor:
        """p(component k | observed entries of x_obs): (B, K), float64; mask is 1 = unobserved."""
        return self.posterior_log_weights(x_obs, mask, cond).exp()

    def posterior_log_prob(self, x: Tensor, x_obs: Tensor, mask: Tensor, cond: Cond = None) -> Tensor:
        """log p(x_U | x_obs_O): the exact posterior density of the unobserved entries of ``x`` (B,)."""
        log_w = self.posterior_log_weights(x_obs, mask, cond)
        unobs = 1.0 - self.observed_entries(mask, x_obs)
        ll = diag_gaussian_loglik(self._flat(x), self.means, self.stds**2, unobs)
        return torch.logsumexp(log_w + ll, dim=-1)

    # --- exact draws --------------------------------------------------------------------------------
    def posterior_sample(self, x_obs: Tensor, mask: Tensor, generators: SampleGenerators, cond: Cond = None) -> Tensor:
        """Exact draws from p(x_U | x_obs_O); observed entries are copied from ``x_obs``.

        Sample i uses only ``generators``' i-th generator: one uniform (the component), then D normals.
        """
        log_w = self.posterior_log_weights(x_obs, mask, cond)
        k = categorical_from_uniform(log_w, generators.rand((1,))[:, 0])
        noise = self._flat(generators.randn(self.sample_shape, dtype=torch.float64), "noise")
        draw = self.means[k] + self.stds[k] * noise
        keep = self.observed_entries(mask, x_obs)
        out = keep * self._flat(x_obs, "x_obs") + (1 - keep) * draw
        return out.reshape(x_obs.shape).to(device=x_obs.device, dtype=x_obs.dtype)

    def sample(self, generators: SampleGenerators, cond: Cond = None) -> tuple[Tensor, Tensor]:
        """Prior draws (B, C, H, W) float32 and their components (B,), one per generator."""
        log_w = self.class_log_weights(cond, len(generators))
        k = categorical_from_uniform(log_w, generators.rand((1,))[:, 0])
        noise = generators.randn(self.sample_shape, dtype=torch.float64).reshape(len(generators), -1).to(self.means.device)
        x = self.means[k] + self.stds[k] * noise
        return x.reshape(-1, *self.sample_shape).float(), k

    def draw(self, generator: torch.Generator, label: Optional[int] = None) -> tuple[Tensor, int]:
        """One prior draw (C, H, W) float32 and its component from a single CPU generator."""
        cond = None if label is None else torch.tensor([label])
        log_w = self.class_log_weights(cond, 1).cpu()
        k = int(categorical_from_uniform(log_w, torch.rand((1,), generator=generator))[0])
        noise = torch.randn(self.sample_shape, generator=generator).double().reshape(-1)  # as SampleGenerators.randn
        x = self.means[k].cpu() + self.stds[k].cpu() * noise
        return x.reshape(self.sample_shape).float(), k

    # --- structure (for docs and tests) ---------------------------------------------------------------
    def image(self, flat: Tensor) -> Tensor:
        """Reshape flattened rows (..., D) to images (..., C, H, W)."""
        return flat.reshape(*flat.shape[:-1], *self.sample_shape)

    def shared_mask(self) -> Tensor:
        """The completion mask (1, 1 or C, H, W) that observes exactly the shared region (1 = unobserved)."""
        return (~self.image(self.shared)).float()[None]

    def same_parameters(self, other: "GaussianMixture") -> bool:
        """Whether two mixtures are the same distribution (parameters, classes, shapes)."""
        return (
            self.sample_shape == other.sample_shape
            and self.num_classes == other.num_classes
            and all(
                getattr(self, b).shape == getattr(other, b).shape
                and torch.equal(getattr(self, b).cpu(), getattr(other, b).cpu())
                for b in ("means", "stds", "log_weights")
            )
        )

    def extra_repr(self) -> str:
        return f"K={self.num_components}, shape={self.sample_shape}, num_classes={self.num_classes}"
