"""Generator modes. A mode is `backend/modes/<mode>.py` with `generate(ctx: JobContext) -> ModeResult`.

A mode reads the validated job from the context, reports progress with `ctx.progress`, calls
`ctx.check_cancel()` between steps, raises `backend.errors.JobFailure` for failures a user can act
on, and returns its frames: either whole arrays in memory, or a `FrameStream` that makes them one
at a time (mode `preview`: each frame is made, written and let go, so the memory does not grow
with the frame count). The runner writes out/ (atomically) and the events either way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..errors import JobFailure
from ..parallel import map_ordered


@dataclass
class FrameStream:
    """Frames made on demand. render(f) -> (frame (H, W, 3) uint8, flow (H, W, 2) float32 or None)
    for f in 0..num_frames-1; it is called once per frame, from up to `workers` threads at a time
    for different frames (so it must be thread-safe), and the consumer receives the frames in
    order. has_flow: every frame comes with its flow. stage, message: the progress the consumer
    reports as frames arrive. finish(): called once after the last frame (e.g. to complete the
    mode's info); None for nothing."""

    num_frames: int
    render: Callable[[int], tuple[np.ndarray, np.ndarray | None]]
    has_flow: bool = False
    workers: int = 1
    stage: str = "render"
    finish: Callable[[], None] | None = None
    message: str = "making frames"

    def frames(self, ctx=None, then: Callable | None = None) -> Iterator:
        """(frame, flow) for every frame in order, then finish(). With `ctx` (a JobContext):
        its cancel is checked before each frame (on a failure at most one frame per thread is
        still finished: map_ordered) and progress `stage` is reported as frames arrive (about
        8 reports in all, every frame up to 16 frames). With `then`: then(frame, flow) instead,
        run on the thread that made the frame (the consumer's own per-frame work, in parallel)."""
        n = self.num_frames
        check = None if ctx is None else ctx.check_cancel
        render = self.render if then is None else (lambda f: then(*self.render(f)))
        for f, item in enumerate(map_ordered(render, n, self.workers, check)):
            if ctx is not None and (f % max(1, n // 8) == 0 or f == n - 1):
                ctx.progress(self.stage, f + 1, n, self.message)
            yield item
        if self.finish is not None:
            self.finish()


@dataclass
class ModeResult:
    """frames: (F, H, W, 3) uint8 RGB, frame 0 first, or a FrameStream of them. flow: (F, H, W, 2)
    float32 forward flow from frame 0 in pixels (flow[0] == 0) or None (a stream carries its flow
    per frame: flow is then None and frames.has_flow says whether there is one). info:
    JSON-serialisable facts for result.json (a stream may complete it in its finish())."""

    frames: np.ndarray | FrameStream
    flow: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def streamed(self) -> bool:
        return isinstance(self.frames, FrameStream)

    @property
    def has_flow(self) -> bool:
        return self.frames.has_flow if self.streamed else self.flow is not None

    def check(self, num_frames: int, height: int, width: int) -> ModeResult:
        """Raise JobFailure("internal") when the shapes or dtypes break the contract above (a
        stream's frames are checked one by one as they come: check_frame)."""
        if self.streamed:
            if self.frames.num_frames != num_frames or self.flow is not None:
                raise JobFailure(
                    "internal",
                    f"the mode returned a stream of {self.frames.num_frames} frames (flow beside it: "
                    f"{self.flow is not None}); expected {num_frames} frames carrying their own flow",
                )
            return self
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

    def stream(self, workers: int = 1) -> FrameStream:
        """The frames as a FrameStream (the stream itself, or a view of the whole arrays)."""
        if self.streamed:
            return self.frames
        frames, flow = self.frames, self.flow
        return FrameStream(
            len(frames),
            lambda f: (frames[f], None if flow is None else flow[f]),
            has_flow=flow is not None,
            workers=1,
            stage="write",
            message="writing frames and videos",
        )

    def materialize(self, ctx=None) -> ModeResult:
        """This result with whole arrays: a stream is run to its end and collected (for callers
        that need the whole video, e.g. mode guided's layout prior; `ctx` as in
        FrameStream.frames). Whole arrays: itself."""
        if not self.streamed:
            return self
        s = self.frames
        frames = flow = None
        for f, (frame, fl) in enumerate(s.frames(ctx)):
            if frames is None:
                frames = np.empty((s.num_frames,) + frame.shape, np.uint8)
                if fl is not None:
                    flow = np.empty((s.num_frames,) + fl.shape, np.float32)
            frames[f] = frame
            if flow is not None:
                flow[f] = fl
        return ModeResult(frames, flow, self.info)


def check_frame(f: int, frame, flow, height: int, width: int, has_flow: bool) -> None:
    """Raise JobFailure("internal") when frame f of a stream breaks the contract of FrameStream."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (height, width, 3):
        got = (getattr(frame, "shape", None), getattr(frame, "dtype", None))
        raise JobFailure(
            "internal", f"the mode streamed frame {f} as {got}; expected ({height}, {width}, 3) uint8"
        )
    if has_flow and (flow is None or np.shape(flow) != (height, width, 2)):
        raise JobFailure(
            "internal",
            f"the mode streamed the flow of frame {f} as {np.shape(flow)}; expected ({height}, {width}, 2)",
        )


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
