"""Generator modes. A mode is `backend/modes/<mode>.py` with `generate(ctx: JobContext) -> ModeResult`.

A mode reads the validated job from the context, reports progress with `ctx.progress`, calls
`ctx.check_cancel()` between steps, raises `backend.errors.JobFailure` for failures a user can act
on, and returns frames in memory: the runner writes out/ (atomically) and the events.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import JobFailure


@dataclass
class ModeResult:
    """frames: (F, H, W, 3) uint8 RGB, frame 0 first. flow: (F, H, W, 2) float32 forward flow from
    frame 0 in pixels (flow[0] == 0) or None. info: JSON-serialisable facts for result.json."""

    frames: np.ndarray
    flow: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def check(self, num_frames: int, height: int, width: int) -> ModeResult:
        """Raise JobFailure("internal") when the shapes or dtypes break the contract above."""
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.shape != (num_frames, height, width, 3):
            got = (getattr(f, "shape", None), getattr(f, "dtype", None))
            raise JobFailure(
                "internal",
                f"the mode returned frames {got}; expected ({num_frames}, {height}, {width}, 3) uint8",
            )
        if self.flow is not None and self.flow.shape != (num_frames, height, width, 2):
            raise JobFailure(
                "internal",
                f"the mode returned flow {self.flow.shape}; expected ({num_frames}, {height}, {width}, 2)",
            )
        return self


def load_mode(name: str):
    """Import backend.modes.<name>. A missing third-party package becomes a missing_dependency
    failure (ModuleNotFoundError propagates to the runner, which classifies it)."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise JobFailure(
                "invalid_job",
                f"this generator has no mode {name!r}",
                "Update the extension, or choose another mode in the Animate Anything panel.",
            ) from exc
        raise
    if not callable(getattr(module, "generate", None)):
        raise JobFailure("internal", f"backend.modes.{name} has no generate(ctx) function")
    return module
