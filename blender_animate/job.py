"""The job directory: the one contract between Blender and the generator process.

Layout (DESIGN.md)::

    JOB/job.json           JobSpec as JSON (schema_version, mode, sizes, sampling, model options)
    JOB/reference.png      the first frame, width x height, RGB 8-bit
    JOB/depth.npy          optional planar depth (H, W) float32, scene units, aligned with reference.png
    JOB/conditions.npz     c2w (F,4,4) float64 OpenCV camera-to-world, K (F,3,3) float64 pixels,
                           tracks (P,F,2) float32 pixels, track_visible (P,F) bool,
                           track_radius (P,) float32 pixels, optional region_masks (R,H,W) bool
    JOB/reference_video.*  optional motion reference (any container FFmpeg reads)
    JOB/cancel             created by whoever wants the run to stop
    JOB/out/               written by the generator

Everything here is stdlib + numpy so that Blender, the generator and a render farm share one
validator. Validation raises JobError with a message that says what to change.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tracks import DEFAULT_RADIUS

SCHEMA_VERSION = 1
MODES = ("preview", "guided", "animateanything")
DEVICES = ("auto", "cuda", "cpu", "mps")
DTYPES = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("auto", "none", "model", "sequential", "group")
REFERENCE_SOURCES = ("file", "render")

JOB_JSON = "job.json"
REFERENCE_PNG = "reference.png"
DEPTH_NPY = "depth.npy"
CONDITIONS_NPZ = "conditions.npz"
CANCEL_FILE = "cancel"
OUT_DIR = "out"


class JobError(ValueError):
    """An invalid job or setting; the message says what to change."""


@dataclass
class JobSpec:
    """Settings of one generation job (job.json). Sizes in pixels, fps in frames per second."""

    mode: str = "preview"
    width: int = 720
    height: int = 480
    num_frames: int = 49
    fps: float = 8.0
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 50
    guidance_scale: float = 6.0
    # guided mode: 1.0 = plain image-to-video, lower = closer to the preview's motion (SDEdit).
    strength: float = 0.8
    noise_warp: bool = False
    # A local folder or a hub id; downloads only when allow_download is true.
    model: str = ""
    animateanything_model: str = ""
    allow_download: bool = False
    device: str = "auto"
    dtype: str = "auto"
    offload: str = "auto"
    vae_tiling: str = "auto"  # "auto", "on", "off"
    # Where the reference image came from ("file" or "render") and the original path if a file.
    reference_source: str = "file"
    reference_path: str = ""
    # Planar depth used when depth.npy is absent: a fronto-parallel plane at this distance
    # (scene units); 0 means "unknown" and the generator picks its documented default.
    fallback_depth: float = 0.0
    reference_video: str = ""  # file name inside the job directory, or ""
    schema_version: int = SCHEMA_VERSION
    # Free-form provenance (Blender version, scene, frame range); never interpreted.
    info: dict = field(default_factory=dict)

    def validate(self) -> JobSpec:
        """Check every field; raise JobError naming the field and what to change."""
        if self.schema_version != SCHEMA_VERSION:
            raise JobError(
                f"job schema_version {self.schema_version} is not supported (this generator reads "
                f"{SCHEMA_VERSION}): export the job again with the same extension version"
            )
        _choice("mode", self.mode, MODES)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("offload", self.offload, OFFLOADS)
        _choice("vae_tiling", self.vae_tiling, ("auto", "on", "off"))
        _choice("reference_source", self.reference_source, REFERENCE_SOURCES)
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 16 <= v <= 4096 or v % 8:
                raise JobError(f"{name} must be a multiple of 8 between 16 and 4096 pixels, got {v!r}")
        if not isinstance(self.num_frames, int) or not 2 <= self.num_frames <= 1024:
            raise JobError(f"num_frames must be between 2 and 1024, got {self.num_frames!r}")
        if not 0 < float(self.fps) <= 240:
            raise JobError(f"fps must be in (0, 240], got {self.fps!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise JobError(f"steps must be between 1 and 1000, got {self.steps!r}")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise JobError(f"strength must be between 0 and 1, got {self.strength!r}")
        if not 0.0 <= float(self.guidance_scale) <= 50.0:
            raise JobError(f"guidance_scale must be between 0 and 50, got {self.guidance_scale!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise JobError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not np.isfinite(self.fallback_depth) or self.fallback_depth < 0:
            raise JobError(f"fallback_depth must be >= 0 scene units, got {self.fallback_depth!r}")
        if self.mode in ("guided", "animateanything") and self.num_frames % 4 != 1:
            raise JobError(
                f"mode {self.mode!r} needs 4k+1 frames (CogVideoX latents), got {self.num_frames}: "
                "use 49 for CogVideoX 1.0 or 81 for 1.5"
            )
        if self.reference_video and (
            os.sep in self.reference_video
            or "/" in self.reference_video
            or self.reference_video.startswith(".")
        ):
            raise JobError("reference_video must be a plain file name inside the job directory")
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        if not isinstance(data, dict):
            raise JobError("job.json must hold a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise JobError(f"job.json has unknown fields {unknown}: was it written by a newer extension?")
        if "schema_version" not in data:
            raise JobError("job.json has no schema_version: it was not written by this extension")
        return cls(**data).validate()


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise JobError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass
class Conditions:
    """conditions.npz. Shapes: c2w (F,4,4) float64 OpenCV camera-to-world; K (F,3,3) float64 in
    pixels of the job size (origin top-left, pixel centres at i + 0.5); tracks (P,F,2) float32
    pixel (x, y); track_visible (P,F) bool; track_radius (P,) float32 pixels; region_masks
    (R,H,W) bool (closed strokes: areas that move with the drags that start inside them)."""

    c2w: np.ndarray
    K: np.ndarray
    tracks: np.ndarray
    track_visible: np.ndarray
    track_radius: np.ndarray
    region_masks: np.ndarray

    @classmethod
    def create(
        cls, c2w, K, tracks=None, track_visible=None, track_radius=None, region_masks=None, *, height, width
    ):
        c2w = np.asarray(c2w, np.float64)
        F = c2w.shape[0] if c2w.ndim == 3 else 0
        tracks = np.zeros((0, F, 2), np.float32) if tracks is None else np.asarray(tracks, np.float32)
        P = tracks.shape[0]
        if track_visible is None:
            track_visible = np.ones(tracks.shape[:2], bool)
        if track_radius is None:
            track_radius = np.full((P,), DEFAULT_RADIUS, np.float32)
        if region_masks is None:
            region_masks = np.zeros((0, height, width), bool)
        return cls(
            c2w,
            np.asarray(K, np.float64),
            tracks,
            np.asarray(track_visible, bool),
            np.asarray(track_radius, np.float32),
            np.asarray(region_masks, bool),
        )

    def validate(self, num_frames: int, height: int, width: int) -> Conditions:
        F = num_frames
        _shape("c2w", self.c2w, (F, 4, 4))
        _shape("K", self.K, (F, 3, 3))
        P = self.tracks.shape[0] if self.tracks.ndim == 3 else -1
        _shape("tracks", self.tracks, (P, F, 2))
        _shape("track_visible", self.track_visible, (P, F))
        _shape("track_radius", self.track_radius, (P,))
        R = self.region_masks.shape[0] if self.region_masks.ndim == 3 else -1
        _shape("region_masks", self.region_masks, (R, height, width))
        for name in ("c2w", "K", "tracks", "track_radius"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise JobError(f"conditions.npz: {name} holds NaN or infinite values")
        if np.any(self.track_radius <= 0):
            raise JobError("conditions.npz: every track_radius must be > 0 pixels")
        return self

    def save(self, path: str | os.PathLike) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Conditions:
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [f.name for f in dataclasses.fields(cls) if f.name not in z]
                if missing:
                    raise JobError(f"{path}: missing arrays {missing}")
                return cls(**{f.name: z[f.name] for f in dataclasses.fields(cls)})
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            if isinstance(exc, JobError):
                raise
            raise JobError(f"{path} is not a readable conditions file ({exc}): export the job again") from exc


def _shape(name: str, arr: np.ndarray, shape: tuple) -> None:
    if arr.ndim != len(shape) or any(s != -1 and a != s for a, s in zip(arr.shape, shape)):
        want = "x".join("N" if s == -1 else str(s) for s in shape)
        raise JobError(f"conditions.npz: {name} has shape {arr.shape}, expected ({want})")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a file under a temporary name in the same folder, then rename it into place, so a
    reader never sees a half-written file. `write(fh)` receives a binary file object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_spec(job_dir: str | os.PathLike, spec: JobSpec) -> None:
    spec.validate()
    atomic_write(Path(job_dir) / JOB_JSON, lambda fh: fh.write(spec.to_json().encode()))


def read_spec(job_dir: str | os.PathLike) -> JobSpec:
    path = Path(job_dir) / JOB_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobError(f"{path} does not exist: is {job_dir} a job directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JobError(f"{path} is not valid JSON ({exc}): export the job again") from exc
    try:
        return JobSpec.from_dict(data)
    except TypeError as exc:
        raise JobError(f"{path}: {exc}") from exc


def load_job(job_dir: str | os.PathLike) -> tuple[JobSpec, Conditions]:
    """Read and validate job.json and conditions.npz and check that the files it names exist.
    Images are checked by the generator that reads them (PIL lives outside the core)."""
    job_dir = Path(job_dir)
    spec = read_spec(job_dir)
    if not (job_dir / REFERENCE_PNG).is_file():
        raise JobError(f"{job_dir / REFERENCE_PNG} is missing: export the job again")
    if spec.reference_video and not (job_dir / spec.reference_video).is_file():
        raise JobError(f"the reference video {job_dir / spec.reference_video} is missing")
    cond_path = job_dir / CONDITIONS_NPZ
    if not cond_path.is_file():
        raise JobError(f"{cond_path} is missing: export the job again")
    cond = Conditions.load(cond_path).validate(spec.num_frames, spec.height, spec.width)
    depth_path = job_dir / DEPTH_NPY
    if depth_path.exists():
        depth = load_depth(job_dir)
        if depth.shape != (spec.height, spec.width):
            raise JobError(f"{depth_path} has shape {depth.shape}, expected ({spec.height}, {spec.width})")
    return spec, cond


def load_depth(job_dir: str | os.PathLike) -> np.ndarray | None:
    """Planar depth (H, W) float32 in scene units, or None when the job has none. Non-finite or
    non-positive values (background) are kept: callers treat them as "far"."""
    path = Path(job_dir) / DEPTH_NPY
    if not path.exists():
        return None
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise JobError(f"{path} is not a readable .npy file ({exc})") from exc
    if depth.ndim != 2:
        raise JobError(f"{path} must be a 2-D (H, W) array, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def save_depth(job_dir: str | os.PathLike, depth: np.ndarray) -> None:
    atomic_write(Path(job_dir) / DEPTH_NPY, lambda fh: np.save(fh, np.asarray(depth, np.float32)))
