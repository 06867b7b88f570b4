"""The task plug-in protocol: what kind of completion a run does.

A task is built from ``conf/task/<name>.yaml`` (``_target_``) like every other component. The runner
knows no task by name and reads none of its keys; it asks the task, per batch:

    batch   = task.load(dataset, masks, indices, device)        # data-set items -> a Batch (data space)
    problem = task.problem(backbone, method, batch, schedule, counter)   # -> Problem + its Observation
    z       = reverse(backbone, method, problem, ...)            # the one sampling core
    outputs = task.finish(backbone, batch, z)                    # decode, post-process (data space)
    record  = task.record(batch, j, outputs[j])                  # the tensors a sample file keeps
    task.pictures(record), task.panels(record)                   # its PNGs, its row of grid.png
    task.movies(record)                                          # its MP4s and GIFs (videos)

``non_output_keys`` name the task's config keys that change no output (excluded from a run's
fingerprint, e.g. a cache switch); ``postprocess_keys`` those that only post-process finished outputs
(``task.postprocess``), so a run that differs from another only there can reuse its samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from alm.methods.base import Method, Problem

Tensor = torch.Tensor


@dataclass
class Batch:
    """Samples ``indices`` of a run in data space: sources (B, C, H, W), masks (B, 1, H, W), 1 = to generate."""

    indices: list[int]
    sources: Tensor
    masks: Tensor
    labels: list = field(default_factory=list)
    metas: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


class Task:
    """Base class of the tasks (see the module docstring)."""

    name: ClassVar[str] = "task"
    non_output_keys: ClassVar[tuple[str, ...]] = ()
    postprocess_keys: ClassVar[tuple[str, ...]] = ()

    def check(self, backbone: Any, dataset: Any, method: Method) -> None:
        """Refuse an invalid combination before any work starts (raise ConfigError)."""

    def load(self, dataset: Any, masks: Any, indices: list[int], device: torch.device) -> Batch:
        raise NotImplementedError

    def problem(self, backbone: Any, method: Method, batch: Batch, schedule: Any, counter: Any = None) -> Problem:
        raise NotImplementedError

    def finish(self, backbone: Any, batch: Batch, z: Tensor) -> Tensor:
        """The outputs (data space) of a finished batch: decoded, then ``postprocess``-ed."""
        with torch.no_grad():
            return self.postprocess(backbone, batch, backbone.decode(z).float())

    def postprocess(self, backbone: Any, batch: Batch, outputs: Tensor) -> Tensor:
        """Post-processing of decoded outputs (only ``postprocess_keys`` may change it)."""
        return outputs

    def record(self, batch: Batch, j: int, output: Tensor) -> dict[str, Any]:
        """The tensors sample ``j`` of ``batch`` keeps (``.clone()``: a row alone, not the batch's storage)."""
        return {"source": batch.sources[j].cpu().clone(), "mask": batch.masks[j].cpu().clone(),
                "output": output.cpu().clone()}

    def pictures(self, record: dict) -> dict[str, Tensor]:
        """name -> (C, H, W) image in [-1, 1]: the PNGs of one sample (``images/<index>_<name>.png``)."""
        return {"output": record["output"]}

    def movies(self, record: dict) -> dict[str, Tensor]:
        """name -> clip (C, F, H, W) in [-1, 1]: the videos of one sample (``videos/<index>_<name>.mp4``
        and ``.gif``); none for still outputs."""
        return {}

    def panels(self, record: dict) -> list[Tensor]:
        """One sample's row of ``grid.png``."""
        return list(self.pictures(record).values())
