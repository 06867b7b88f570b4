"""Stand-ins for a smoke run of the motion tables (``make table4 SMOKE=1``): HumanML3D cannot be fetched here.

``smoke_environment(cache)`` writes a synthetic folder in HumanML3D's layout (``alm.data.smoke_motion``: smooth
random feature trajectories of 40-48 frames, captions with word/POS tokens; nothing about them means anything)
and returns the environment variable that points ``dataset=humanml3d`` at it. The tiny U-Net
(``backbone=condmdi-tiny``) and the tiny evaluator (``metrics=motion-tiny``) need no file.
"""

from __future__ import annotations

from pathlib import Path


def smoke_environment(cache: Path) -> dict[str, str]:
    """``{"ALM_HUMANML3D": <a synthetic HumanML3D folder below cache>}`` (written once, kept)."""
    from alm.data.smoke_motion import make_smoke_humanml3d

    folder = make_smoke_humanml3d(Path(cache) / "smoke-data" / "HumanML3D", num=48, frames_range=(40, 48))
    return {"ALM_HUMANML3D": str(folder)}
