"""An on-disk cache of DDIM-inversion trajectories, one file per sample, so that a sweep over method
weights inverts each source once (docs/method.md §9: X_t comes from DDIM inversion, computed once as preprocessing).

Location: ``paths.inversion_cache`` (default ``$ALM_INVERSION_CACHE_DIR``, else
``${paths.cache}/inversion`` = ``$ALM_CACHE_DIR/inversion`` or ``~/.cache/alm/inversion``): outside the
project, so no bulky file can reach git, and shared by every run folder and clone. Switch:
``task.inversion_cache`` (true by default; the task builds the cache, ``alm.tasks.inpaint``). Neither changes any output, so neither is part of a run's
fingerprint or folder name. Delete the folder at any time; it only costs recomputation.

Layout: ``<root>/<key[:2]>/<key>.pt`` holding ``{"version", "key", "trajectory"}``, the trajectory of
ONE sample, (n, *sample_shape), written atomically (unique temporary name, then ``os.replace``), so
shards and parallel sweeps may share the folder.

The key (``sample_key``) is a SHA-256 of everything the trajectory is a function of:

| part             | what is hashed                                                                 |
|------------------|--------------------------------------------------------------------------------|
| format           | ``CACHE_VERSION`` (bump it when ``alm.sampling.invert`` changes)               |
| backbone         | ``backbone_identity``: its class, public settings (name, prediction type, scheduler config, ...), every submodule's config, and the bytes of every parameter and buffer (VAE and text encoder included) |
| schedule         | the timesteps and both alpha tables (steps, spacing, offset, beta table, dtype)|
| source           | the DATA-space image that is encoded and inverted (the masked source, hole filled; or the full image for ``task.invert=full``): dtype, shape, bytes |
| mask             | the sample's binarised data-space mask (bytes)                                 |
| condition        | the sample's label / prompt / encoder states (only for conditional backbones) |
| diffusion space  | dtype and shape of the inverted tensor, and the device type (cpu / cuda)       |

Why data space and raw labels rather than the encoded latent and the text embedding: a VAE or text
encoder run on a batch of another size may round differently in the last bit, and a key must not depend
on the batch. The encoders' weights are in the backbone part, so the key still determines the tensor
that is inverted. For pixel backbones the source IS the inverted tensor.

Outputs: with every sample of a batch found or every one missing, the trajectory is bitwise the one
``invert`` gives for that batch (a miss inverts the whole batch, exactly as without the cache; a hit
returns what such a run stored). A partly cached batch inverts only its missing samples, as a smaller
batch: the same as running with another batch size (equal to ~1e-6, as the runner's batch-size test).

Counting (``CallCounter``): ``evaluations`` counts the network evaluations actually made;
``cached_evaluations`` the inversion evaluations served from disk (``len(schedule)`` per hit). The
runner's per-sample ``evaluations`` column is their sum — the method's cost, the same whatever the
cache held — and its ``cached_evaluations`` column the part that was read from disk.

A file that cannot be read, or holds something else than expected, is recomputed and rewritten with an
``InversionCacheWarning``; a cache folder that cannot be written is used read-only, with one warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from alm.backbones.base import Backbone, Cond, index_cond
from alm.sampling import CallCounter, invert
from alm.schedule import Schedule

Tensor = torch.Tensor

#: bump when the inversion math or the file format changes: old entries are then never read again
CACHE_VERSION = 1


class InversionCacheWarning(UserWarning):
    """A cache file that could not be used (it is recomputed) or a folder that cannot be written."""


# --- hashing --------------------------------------------------------------------------------------

def _update_tensor(h: "hashlib._Hash", t: Tensor) -> None:
    t = t.detach()
    h.update(f"tensor:{str(t.dtype)}:{tuple(t.shape)}:".encode())
    if t.numel():
        flat = t.contiguous().reshape(-1).view(torch.uint8).cpu()
        h.update(memoryview(flat.numpy()))


def _update_value(h: "hashlib._Hash", v: Any) -> None:
    """Hash a label, prompt, tensor or a nested list / dict of them (type-tagged, so 1 != 1.0 != "1")."""
    if isinstance(v, Tensor):
        _update_tensor(h, v)
    elif isinstance(v, np.ndarray):
        _update_tensor(h, torch.from_numpy(np.ascontiguousarray(v)))
    elif isinstance(v, Mapping):
        h.update(f"dict:{len(v)}:".encode())
        for k in sorted(v, key=str):
            _update_value(h, str(k))
            _update_value(h, v[k])
    elif isinstance(v, (list, tuple)):
        h.update(f"seq:{len(v)}:".encode())
        for x in v:
            _update_value(h, x)
    elif isinstance(v, np.generic):
        _update_value(h, v.item())
    else:
        h.update(f"{type(v).__name__}:{v!r};".encode())


def _plain_settings(obj: Any) -> dict:
    """The public non-tensor attributes of a module that may change what it computes."""
    out = {}
    for k, v in vars(obj).items():
        if k.startswith("_") or k == "training":
            continue
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out[k] = dataclasses.asdict(v)
        elif isinstance(v, (str, int, float, bool, type(None), tuple, list, Mapping)):
            out[k] = v
    return out


def _module_config(m: torch.nn.Module) -> Optional[Any]:
    cfg = getattr(m, "config", None)
    if cfg is None:
        return None
    if hasattr(cfg, "to_dict"):  # transformers' PretrainedConfig
        cfg = cfg.to_dict()
    return dict(cfg) if isinstance(cfg, Mapping) else None


def backbone_identity(backbone: Backbone) -> str:
    """A hash of everything of ``backbone`` that ``eps`` (and ``encode``) depend on.

    A backbone may define ``cache_identity() -> str`` to replace it (e.g. a checkpoint id and revision
    when hashing its weights is too slow); the default hashes every parameter and buffer (about a second
    per GB).
    """
    own = getattr(backbone, "cache_identity", None)
    if callable(own):
        return hashlib.sha256(f"custom:{type(backbone).__qualname__}:{own()}".encode()).hexdigest()
    h = hashlib.sha256()
    h.update(f"{type(backbone).__module__}.{type(backbone).__qualname__};".encode())
    settings = {"self": _plain_settings(backbone)}
    for name, m in backbone.named_modules():
        cfg = _module_config(m)
        if cfg is not None:
            settings[f"config:{name}"] = cfg
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, t in [*backbone.named_parameters(), *backbone.named_buffers()]:
        h.update(name.encode())
        _update_tensor(h, t)
    return h.hexdigest()


def schedule_identity(schedule: Schedule) -> str:
    h = hashlib.sha256()
    h.update(f"T={schedule.num_train_timesteps};".encode())
    for t in (schedule.timesteps, schedule.ab, schedule.ab_prev):
        _update_tensor(h, t)
    return h.hexdigest()


def sample_key(
    backbone_id: str,
    schedule_id: str,
    source: Tensor,
    mask: Tensor,
    label: Any,
    conditional: bool,
    latent_dtype: torch.dtype,
    latent_shape: Sequence[int],
    device_type: str,
) -> str:
    """The cache key of ONE sample (see the module docstring); a pure function of its arguments."""
    h = hashlib.sha256()
    h.update(f"alm-inversion-v{CACHE_VERSION};{backbone_id};{schedule_id};".encode())
    _update_tensor(h, source)
    _update_tensor(h, mask)
    if conditional:
        h.update(b"cond:")
        _update_value(h, label)
    else:
        h.update(b"uncond;")
    h.update(f"{latent_dtype};{tuple(int(s) for s in latent_shape)};{device_type}".encode())
    return h.hexdigest()


# --- the cache ------------------------------------------------------------------------------------

class InversionCache:
    """Per-sample DDIM-inversion trajectories under ``root`` (see the module docstring)."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root).expanduser()
        self._identities: dict[int, tuple[Backbone, str]] = {}  # id -> (backbone, hash): computed once
        self._writable = True

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def identity(self, backbone: Backbone) -> str:
        entry = self._identities.get(id(backbone))
        if entry is None or entry[0] is not backbone:
            entry = (backbone, backbone_identity(backbone))
            self._identities[id(backbone)] = entry
        return entry[1]

    def keys(
        self,
        backbone: Backbone,
        schedule: Schedule,
        sources: Tensor,
        masks: Tensor,
        labels: Optional[Sequence[Any]],
        latent: Tensor,
    ) -> list[str]:
        """One key per sample: ``sources``/``masks`` in data space (B, C, H, W)/(B, 1, H, W), ``latent``
        the tensor that is inverted (B, *sample_shape)."""
        bid, sid = self.identity(backbone), schedule_identity(schedule)
        batch = sources.shape[0]
        labels = list(labels) if labels is not None else [None] * batch
        return [
            sample_key(bid, sid, sources[j], masks[j], labels[j], bool(backbone.conditional),
                       latent.dtype, latent.shape[1:], latent.device.type)
            for j in range(batch)
        ]

    def load(self, key: str, steps: int, like: Tensor) -> Optional[Tensor]:
        """The stored trajectory (n, *like.shape) of ``key``, or None (absent or unusable, with a warning)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION or entry.get("key") != key:
                raise ValueError("not an inversion-cache entry for this key")
            traj = entry.get("trajectory")
            if not isinstance(traj, Tensor):
                raise ValueError("holds no trajectory tensor")
            want = (steps, *like.shape)
            if tuple(traj.shape) != want or traj.dtype != like.dtype:
                raise ValueError(f"holds {tuple(traj.shape)} {traj.dtype}, expected {want} {like.dtype}")
            if not bool(torch.isfinite(traj).all()):
                raise ValueError("holds NaN/inf")
        except Exception as err:  # any unreadable file is a miss, never a crash
            msg = str(err).strip().splitlines()
            warnings.warn(f"inversion cache file {path} is unusable ({type(err).__name__}: {msg[0] if msg else ''}); "
                          "recomputing it", InversionCacheWarning, stacklevel=3)
            return None
        return traj.to(like.device)

    def store(self, key: str, trajectory: Tensor) -> None:
        """Write one sample's trajectory atomically; a folder that cannot be written disables writing."""
        if not self._writable:
            return
        path = self.path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:  # clone: a slice would save the whole batch's storage
                torch.save({"version": CACHE_VERSION, "key": key, "trajectory": trajectory.detach().cpu().clone()}, f)
            os.replace(tmp, path)
        except OSError as err:
            self._writable = False
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            warnings.warn(f"inversion cache {self.root} cannot be written ({type(err).__name__}: {err}); "
                          "continuing without storing trajectories", InversionCacheWarning, stacklevel=3)

    def invert(
        self,
        backbone: Backbone,
        x0: Tensor,
        schedule: Schedule,
        cond: Cond,
        keys: Sequence[str],
        counter: Optional[CallCounter] = None,
    ) -> Tensor:
        """``alm.sampling.invert(backbone, x0, schedule, cond)`` with per-sample entries read or written.

        Missing samples are inverted together (all of the batch if none is stored) and stored one by one.
        """
        batch, n = x0.shape[0], len(schedule)
        if len(keys) != batch:
            raise ValueError(f"{len(keys)} cache keys for a batch of {batch}")
        found = [self.load(k, n, x0[j]) for j, k in enumerate(keys)]
        missing = [j for j, f in enumerate(found) if f is None]
        if counter is not None:
            counter.cached_evaluations += n * (batch - len(missing))
        if len(missing) == batch:
            traj = invert(backbone, x0, schedule, cond, counter)
            for j, k in enumerate(keys):
                self.store(k, traj[:, j])
            return traj
        traj = torch.empty((n, *x0.shape), dtype=x0.dtype, device=x0.device)
        for j, f in enumerate(found):
            if f is not None:
                traj[:, j] = f
        if missing:
            idx = torch.tensor(missing, device=x0.device)
            sub_cond = index_cond(cond, idx) if backbone.conditional else None
            computed = invert(backbone, x0[idx], schedule, sub_cond, counter)
            for r, j in enumerate(missing):
                traj[:, j] = computed[:, r]
                self.store(keys[j], computed[:, r])
        return traj
