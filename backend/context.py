"""JobContext: everything a mode needs, loaded and validated once by the runner."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blender_animate import job as jobio

from .cancel import CancelState
from .errors import JobFailure
from .events import Events


@dataclass
class JobContext:
    """A validated job and the channel back to the client.

    reference: (H, W, 3) uint8 RGB, the first frame at the job size.
    depth: (H, W) float32 planar depth in scene units aligned with `reference`, or None (the mode
        then uses `spec.fallback_depth`); non-finite or <= 0 values mean "far/background".
    cond: conditions.npz (c2w (F,4,4) OpenCV camera-to-world, K (F,3,3) pixels, tracks ...).
    device: the `--device` argument ("auto", "cpu", "cuda", "mps"); "auto" defers to spec.device.
    """

    job_dir: Path
    spec: jobio.JobSpec
    cond: jobio.Conditions
    reference: np.ndarray
    depth: np.ndarray | None
    device: str = "auto"
    events: Events | None = None
    cancel: CancelState | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.spec.height

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def num_frames(self) -> int:
        return self.spec.num_frames

    @property
    def requested_device(self) -> str:
        """The `--device` argument, or job.json's device when that is "auto" (or empty)."""
        return self.device if self.device not in ("", "auto") else self.spec.device

    @property
    def workers(self) -> int:
        """Threads a mode may use for per-frame CPU work (worker_count())."""
        return worker_count()

    @property
    def encoder_threads(self) -> int | None:
        """Threads for the video encoder: `workers` when ANIMATE_ANYTHING_THREADS sets a limit (a
        run told to use N threads does, the encoder included), else None (x264's own choice)."""
        return _thread_limit()

    def progress(self, stage: str, step: int, total: int, message: str = "") -> None:
        """Report `step` of `total` in `stage` (e.g. "flow", "splat", "encode") and honour a cancel."""
        self.check_cancel()
        if self.events is not None:
            self.events.emit("progress", stage=stage, step=int(step), total=int(total), message=message)

    def warn(self, message: str) -> None:
        """A non-fatal problem the user should see (kept in result.json too)."""
        self.warnings.append(message)
        if self.events is not None:
            self.events.emit("warning", message=message)

    def check_cancel(self) -> None:
        """Raise backend.errors.Cancelled if the run was asked to stop."""
        if self.cancel is not None:
            self.cancel.check()


def check_job_dir(job_dir: Path) -> None:
    """JobFailure("invalid_job") unless `job_dir` is a directory."""
    if not Path(job_dir).is_dir():
        raise JobFailure(
            "invalid_job", f"{job_dir} is not a directory", "Pass the job directory Blender exported."
        )


def load_context(
    job_dir: str | os.PathLike,
    *,
    events: Events | None = None,
    cancel: CancelState | None = None,
    device: str = "auto",
) -> JobContext:
    """Validate the job directory and read it, all before `started`: job.json's fields (types, then
    ranges), conditions.npz (dtypes, shapes, rigid cameras), depth.npy, the reference image and the
    reference video; every input a plain file in the folder (no symbolic links). Raises
    JobFailure("invalid_job") naming the file and what to do, or JobFailure("missing_dependency")
    when Pillow is absent; Cancelled when `cancel` was requested meanwhile (a signal's Cancelled is
    raised inside a reader, whose broad except would report a broken file)."""
    try:
        return _load_context(Path(job_dir), events, cancel, device)
    except JobFailure:
        if cancel is not None:
            cancel.check()
        raise


def _load_context(job_dir: Path, events, cancel, device: str) -> JobContext:
    check_job_dir(job_dir)
    try:
        spec, cond = jobio.load_job(job_dir)
        depth = jobio.load_depth(job_dir)
    except jobio.JobError as exc:
        raise JobFailure("invalid_job", str(exc)) from exc
    reference = read_reference(job_dir / jobio.REFERENCE_PNG, spec.width, spec.height)
    if spec.reference_video:
        from .preview.refvideo import probe

        try:
            video = jobio.check_input(job_dir / spec.reference_video)
        except jobio.JobError as exc:
            raise JobFailure("invalid_job", str(exc)) from exc
        except FileNotFoundError as exc:
            raise JobFailure("invalid_job", f"the reference video {exc.filename} is missing") from exc
        probe(video)
    return JobContext(job_dir, spec, cond, reference, depth, device=device, events=events, cancel=cancel)


def read_reference(path: Path, width: int, height: int) -> np.ndarray:
    """Read an 8-bit PNG as (H, W, 3) uint8 RGB and check it is width x height pixels. The size in
    its header is checked before any pixel is decoded (a decompression bomb is refused unread),
    and only Pillow's PNG reader is used. The file must be a plain file (jobio.open_input)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ModuleNotFoundError as exc:
        raise JobFailure(
            "missing_dependency",
            "Pillow is not installed in this Python, and the generator needs it to read images",
            "Use the Python Blender runs (the extension bundles Pillow) or `pip install Pillow`.",
        ) from exc
    redo = "Save the reference frame as an 8-bit RGB PNG, or export the job again."
    try:
        with jobio.open_input(path) as fh, Image.open(fh, formats=["PNG"]) as im:
            size = im.size
            if size != (width, height):
                raise JobFailure(
                    "invalid_job",
                    f"{path} is {size[0]}x{size[1]} pixels but job.json says {width}x{height}",
                    "Export the job again so the reference frame and job.json agree.",
                )
            if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA"):
                raise JobFailure(
                    "invalid_job", f"{path} is a {im.mode} image; the reference must be 8-bit RGB", redo
                )
            im.load()
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (JobFailure, MemoryError):
        raise
    except jobio.JobError as exc:
        raise JobFailure("invalid_job", str(exc)) from exc
    except FileNotFoundError as exc:
        raise JobFailure("invalid_job", f"{path} is missing") from exc
    except Image.DecompressionBombError as exc:
        raise JobFailure("invalid_job", f"{path} is far too large to be the reference ({exc})", redo) from exc
    except UnidentifiedImageError as exc:
        raise JobFailure("invalid_job", f"{path} is not a readable image: not a PNG file", redo) from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds on corrupt data (OSError, zlib...)
        raise JobFailure(
            "invalid_job", f"{path} is not a readable image (a broken PNG: {type(exc).__name__}: {exc})", redo
        ) from exc
    if rgb.shape != (height, width, 3):
        raise JobFailure("invalid_job", f"{path} decodes to {rgb.shape}, not {height}x{width} RGB", redo)
    return np.ascontiguousarray(rgb)


def worker_count() -> int:
    """Threads for per-frame CPU work: ANIMATE_ANYTHING_THREADS when set, else the CPUs this
    process may run on, at most 8."""
    limit = _thread_limit()
    if limit is not None:
        return limit
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _thread_limit() -> int | None:
    """ANIMATE_ANYTHING_THREADS as a positive thread count, or None when it is unset or invalid."""
    env = os.environ.get("ANIMATE_ANYTHING_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None
