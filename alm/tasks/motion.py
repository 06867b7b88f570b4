"""Human motion completion: generate the unobserved frames of a motion (paper §4.2.3, B.5).

A sample is a motion in data space: its raw HumanML3D features in CondMDI's absolute-root
representation, (263, 1, L) — features x 1 x frames, zero-padded beyond the motion's ``length``
(``alm.data.humanml3d``). The mask (``mask=first_half | middle_half | last_half | inbetween``,
``alm.motion.frame_masks``) marks the frames to generate, relative to the motion's own length; padding
frames are always generated, never observed (as CondMDI).

- X_t (for a method that reads it): a FRESH forward-noised copy of the observed motion at every step,
  q(X_t | X_0) (``alm.observation.ForwardNoise``; CondMDI's ``q_sample`` of the observed frames, no
  inversion: docs/method.md §9).
- The condition is the motion's caption (text-to-motion backbones; CondMDI's CLIP text encoder).
- The backbone's ``encode`` normalises the features with its training statistics; ``decode`` undoes it,
  so the outputs are raw features again. Nothing is pasted back: the keyframe and trajectory errors
  measure how well a method keeps the observed frames.

Pictures (the first ``render`` samples of a run, so a 1,000-motion table does not spend its time
drawing): ``images/<i>_output.png``, the generated motion as a Fig. 6 strip of skeletons, observed frames
orange and generated ones blue; ``images/<i>_source.png`` the real motion drawn the same way; and with
``videos``, ``videos/<i>_output.mp4`` / ``.gif``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch

from alm.errors import ConfigError
from alm.methods.base import Method, Problem
from alm.observation import ForwardNoise
from alm.sampling import CallCounter
from alm.schedule import Schedule
from alm.tasks.base import Batch, Task

Tensor = torch.Tensor


@dataclass
class Motion(Task):
    """Motion completion (``conf/task/motion.yaml``); the fields are its config keys."""

    name: ClassVar[str] = "motion"
    non_output_keys: ClassVar[tuple[str, ...]] = ("render", "videos", "strip_every")

    render: int = 8          # draw the pictures (and videos) of samples 0..render-1 only
    videos: bool = True      # also an MP4 and a GIF of each drawn sample
    strip_every: int = 10    # the strip draws every k-th frame (plus the observed/generated boundaries)

    def __post_init__(self) -> None:
        if isinstance(self.render, bool) or not isinstance(self.render, int) or self.render < 0:
            raise ConfigError(f"task.render={self.render!r}: expected a sample count (0 = no pictures)")
        if not isinstance(self.videos, bool):
            raise ConfigError(f"task.videos={self.videos!r}: expected true or false")
        if isinstance(self.strip_every, bool) or not isinstance(self.strip_every, int) or self.strip_every < 1:
            raise ConfigError(f"task.strip_every={self.strip_every!r}: expected a positive frame step")

    def check(self, backbone: Any, dataset: Any, method: Method) -> None:
        shape = tuple(getattr(dataset, "shape", ()))
        if shape != tuple(backbone.data_shape):
            raise ConfigError(f"dataset {getattr(dataset, 'name', '')} gives motions of shape {shape} but backbone "
                              f"{getattr(backbone, 'name', '')} works on {tuple(backbone.data_shape)} "
                              "(set dataset.max_frames to the backbone's frames)")
        if getattr(method, "requires_task", None) == "wide":
            raise ConfigError(f"method={method.name} works on the windows of a canvas (task=wide or task=video), "
                              "not on motions")

    def load(self, dataset: Any, masks: Any, indices: list[int], device: torch.device) -> Batch:
        from alm.motion.frame_masks import FrameMasks

        if not isinstance(masks, FrameMasks):
            raise ConfigError(f"task=motion needs a motion mask (mask=first_half, middle_half, last_half or "
                              f"inbetween), not mask={getattr(masks, 'name', masks)}")
        items = [dataset[i] for i in indices]
        motions = torch.stack([it.image for it in items]).to(device)
        total = motions.shape[-1]
        ms = torch.stack([masks.frames(int(it.meta["length"]), total) for it in items]).to(device)
        return Batch(list(indices), motions, ms, [it.label for it in items], [dict(it.meta) for it in items])

    def problem(self, backbone: Any, method: Method, batch: Batch, schedule: Schedule,
                counter: Optional[CallCounter] = None) -> Problem:
        with torch.no_grad():
            x0 = backbone.encode(batch.sources)
            # CondMDI pads with zeros AFTER normalising; padding is never observed, so this changes no method's
            # output, only what a record of X_0 would show
            x0 = x0 * valid_frames(batch, x0.shape[-1]).to(x0)
            mask = backbone.mask_to_sample(batch.masks).to(x0.dtype)
            cond = backbone.make_cond(batch.labels, x0.shape[0])
        observation = ForwardNoise(x0) if method.reads_x_t else None
        return Problem(x0=x0, mask=mask, cond=cond, observation=observation)

    def record(self, batch: Batch, j: int, output: Tensor) -> dict[str, Any]:
        return {**super().record(batch, j, output), "index": int(batch.indices[j]),
                "length": int(batch.metas[j]["length"])}

    # --- pictures -----------------------------------------------------------------------------------
    def _drawn(self, record: dict) -> bool:
        return int(record.get("index", 0)) < self.render

    def pictures(self, record: dict) -> dict[str, Tensor]:
        if not self._drawn(record):
            return {}
        from alm.motion.plot import strip_as_tensor

        return {"output": strip_as_tensor(self._strip(record, "output")),
                "source": strip_as_tensor(self._strip(record, "source"))}

    def movies(self, record: dict) -> dict[str, Tensor]:
        if not (self.videos and self._drawn(record)):
            return {}
        from alm.motion.plot import frames_as_clip, motion_frames

        joints, observed = motion_joints(record, "output")
        return {"output": frames_as_clip(motion_frames(joints, observed))}

    def panels(self, record: dict) -> list[Tensor]:
        from alm.motion.plot import strip_as_tensor

        return [strip_as_tensor(self._strip(record, "source")), strip_as_tensor(self._strip(record, "output"))]

    def _strip(self, record: dict, which: str):
        from alm.motion.plot import motion_strip

        joints, observed = motion_joints(record, which)
        return motion_strip(joints, observed, every=self.strip_every)


def valid_frames(batch: Batch, frames: int) -> Tensor:
    """(B, 1, 1, frames): 1 on each motion's first ``meta["length"]`` frames, 0 on its padding."""
    lengths = torch.tensor([int(m["length"]) for m in batch.metas])
    return (torch.arange(frames)[None, :] < lengths[:, None]).float().reshape(len(lengths), 1, 1, frames)


def motion_joints(record: dict, which: str = "output") -> tuple[Tensor, Tensor]:
    """The valid frames of a sample's motion as joint positions (length, 22, 3), and which are observed (length,)."""
    from alm.motion.features import recover_joints, to_frames_major

    length = int(record["length"])
    features = to_frames_major(record[which].unsqueeze(0).float())[0]  # (L, 263)
    joints = recover_joints(features[:length], representation="abs")
    return joints, record["mask"].reshape(-1)[:length] < 0.5
