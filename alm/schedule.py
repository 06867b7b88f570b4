"""Noise schedules read from a diffusers scheduler config.

Notation (docs/method.md §1; the paper writes ``ab`` as alpha_t):

| symbol   | here                | meaning                                            |
|----------|---------------------|----------------------------------------------------|
| t        | ``timesteps[i]``    | model timestep of step i (descending)              |
| s        | ``t - T/n``         | the previous (less noisy) timestep                 |
| ab_t     | ``ab[i]``           | cumulative product of alphas at t                  |
| ab_s     | ``ab_prev[i]``      | the same at s (``final_alpha_cumprod`` after t_0)  |
| sigma_t  | ``sigma[i]``        | DDPM posterior std, paper Eq. 10                   |

The timestep grid and the alphas come from diffusers' own schedulers, so that our steps equal
``DDIMScheduler.step`` / ``DDIMInverseScheduler.step`` exactly (tested). As there, the previous level
is ``t - T // n``: on the "leading" grids of SD 1.5 / 2.1 / SDXL that is the next timestep of the
grid; on uneven "linspace"/"trailing" grids it is not (diffusers' own behaviour, kept for parity).
``clip_sample`` is not applied (the methods add terms after the step; a clipped x0 would hide them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from alm.errors import ConfigError


@dataclass(frozen=True)
class Schedule:
    """The per-step quantities of a discretised reverse process (all 1-D, length ``n``)."""

    timesteps: torch.Tensor  # long, descending: the t fed to the network at step i
    ab: torch.Tensor  # float64, ab_t
    ab_prev: torch.Tensor  # float64, ab_s
    num_train_timesteps: int

    def __len__(self) -> int:
        return int(self.timesteps.numel())

    @property
    def sigma(self) -> torch.Tensor:
        """DDPM posterior std: sqrt((1-ab_s)/(1-ab_t)) * sqrt(1 - ab_t/ab_s)  (paper Eq. 10)."""
        return ((1 - self.ab_prev) / (1 - self.ab)).sqrt() * (1 - self.ab / self.ab_prev).clamp_min(0).sqrt()


def _scheduler_from_config(config: Mapping[str, Any]):
    from diffusers import DDIMScheduler

    cfg = dict(config)
    for key in ("_class_name", "_diffusers_version"):
        cfg.pop(key, None)
    # Every DDPM-family scheduler config shares the beta table; we read it through DDIMScheduler.
    return DDIMScheduler.from_config(cfg)


def make_schedule(scheduler_config: Mapping[str, Any], num_steps: int, kind: str = "ddim") -> Schedule:
    """The schedule of ``num_steps`` steps on the timestep grid of a diffusers scheduler config.

    ``kind`` only names the sampler for error messages; DDIM and DDPM steps share the grid
    (a 1000-step DDPM is ``num_steps=num_train_timesteps``).
    """
    sched = _scheduler_from_config(scheduler_config)
    T = int(sched.config.num_train_timesteps)
    if not 1 <= num_steps <= T:
        raise ConfigError(f"sampler.steps={num_steps} must be between 1 and the model's {T} training timesteps ({kind})")
    if num_steps == T:  # every training timestep (the 1000-step DDPM); also right when steps_offset = 1
        timesteps = torch.arange(T - 1, -1, -1)
    else:
        sched.set_timesteps(num_steps)
        timesteps = sched.timesteps.long()
        if int(timesteps.max()) >= T:
            raise ConfigError(f"sampler.steps={num_steps} with steps_offset={sched.config.steps_offset} reaches timestep {int(timesteps.max())} >= {T}")
    alphas = sched.alphas_cumprod.double()
    prev = timesteps - T // num_steps
    final = float(sched.final_alpha_cumprod)
    ab = alphas[timesteps]
    ab_prev = torch.where(prev >= 0, alphas[prev.clamp_min(0)], torch.full_like(ab, final))
    return Schedule(timesteps=timesteps, ab=ab, ab_prev=ab_prev, num_train_timesteps=T)
