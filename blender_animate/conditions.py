"""conditions.npz: the per-frame camera and the drags of a job (stdlib + numpy).

    c2w (F,4,4) float64 OpenCV camera-to-world, K (F,3,3) float64 pixels, tracks (P,F,2) float32
    pixels, track_visible (P,F) bool, track_radius (P,) float32 pixels, region_masks (R,H,W) bool,
    object_ids (H,W) int32 (the object under each pixel of reference.png, 0 = none; optional in the
    file: a job without it has zeros)

`Conditions.validate` checks dtypes, shapes and contents (a camera a projection can use, finite
tracks) and raises JobError saying what to change; `Conditions.load` reads the file without
unpickling (job_files.read_npz).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write
from .job_files import NUMBER_KINDS, JobError, _kind_words, read_npz
from .tracks import DEFAULT_RADIUS

MAX_TRACKS = 10_000  # drags (one per stroke) and closed-stroke regions a job may hold
MAX_REGIONS = 1_000


@dataclass
class Conditions:
    """conditions.npz. Shapes: c2w (F,4,4) float64 OpenCV camera-to-world; K (F,3,3) float64 in
    pixels of the job size (origin top-left, pixel centres at i + 0.5); tracks (P,F,2) float32
    pixel (x, y); track_visible (P,F) bool; track_radius (P,) float32 pixels; region_masks
    (R,H,W) bool (closed strokes: areas that move with the drags that start inside them);
    object_ids (H,W) int32: the object under each pixel (job.json `objects` names them; 0 = no
    object: the world, or a picked image)."""

    c2w: np.ndarray
    K: np.ndarray
    tracks: np.ndarray
    track_visible: np.ndarray
    track_radius: np.ndarray
    region_masks: np.ndarray
    object_ids: np.ndarray | None = None

    @classmethod
    def create(
        cls,
        c2w,
        K,
        tracks=None,
        track_visible=None,
        track_radius=None,
        region_masks=None,
        object_ids=None,
        *,
        height,
        width,
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
        if object_ids is None:
            object_ids = np.zeros((height, width), np.int32)
        return cls(
            c2w,
            np.asarray(K, np.float64),
            tracks,
            np.asarray(track_visible, bool),
            np.asarray(track_radius, np.float32),
            np.asarray(region_masks, bool),
            np.asarray(object_ids, np.int32),
        )

    # name -> (dtype after validation, what it must hold)
    DTYPES = {
        "c2w": (np.float64, "numbers"),
        "K": (np.float64, "numbers"),
        "tracks": (np.float32, "numbers"),
        "track_visible": (np.bool_, "booleans"),
        "track_radius": (np.float32, "numbers"),
        "region_masks": (np.bool_, "booleans"),
        "object_ids": (np.int32, "integers"),
    }
    OPTIONAL = ("object_ids",)  # a file without it: zeros

    def validate(self, num_frames: int, height: int, width: int) -> Conditions:
        """Check dtypes, shapes, finiteness and the cameras (rigid c2w, pinhole K with positive focal
        lengths); arrays are converted to the dtypes of the class docstring. Raises JobError."""
        from .camera import CameraError, _check_cameras

        if self.object_ids is None:
            self.object_ids = np.zeros((height, width), np.int32)
        for name, (_dtype, words) in self.DTYPES.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in NUMBER_KINDS:
                what = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise JobError(f"conditions.npz: {name} holds {_kind_words(arr)} ({what}), expected {words}")
            if words in ("booleans", "integers") and arr.dtype.kind == "f":
                raise JobError(f"conditions.npz: {name} holds floats (dtype {arr.dtype}), expected {words}")
        F = num_frames
        _shape("c2w", self.c2w, (F, 4, 4))
        _shape("K", self.K, (F, 3, 3))
        P = self.tracks.shape[0] if self.tracks.ndim == 3 else -1
        _shape("tracks", self.tracks, (P, F, 2))
        _shape("track_visible", self.track_visible, (P, F))
        _shape("track_radius", self.track_radius, (P,))
        R = self.region_masks.shape[0] if self.region_masks.ndim == 3 else -1
        _shape("region_masks", self.region_masks, (R, height, width))
        _shape("object_ids", self.object_ids, (height, width))
        if self.object_ids.size and (self.object_ids.min() < 0 or self.object_ids.max() >= 2**31):
            raise JobError("conditions.npz: object_ids must lie in 0 .. 2**31 - 1 (0 = no object)")
        for what, count, most in (("tracks", P, MAX_TRACKS), ("region masks", R, MAX_REGIONS)):
            if count > most:
                raise JobError(f"conditions.npz holds {count} {what}, more than the {most} a job may have")
        for name, (dtype, _) in self.DTYPES.items():
            setattr(self, name, getattr(self, name).astype(dtype, copy=False))
        for name in ("c2w", "K", "tracks", "track_radius"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise JobError(f"conditions.npz: {name} holds NaN or infinite values")
        if np.any(self.track_radius <= 0):
            raise JobError("conditions.npz: every track_radius must be > 0 pixels")
        try:
            _check_cameras(self.c2w, self.K)
        except CameraError as exc:
            raise JobError(f"conditions.npz: {exc}") from None
        return self

    def save(self, path: str | os.PathLike) -> None:
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if arrays["object_ids"] is None:
            del arrays["object_ids"]
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Conditions:
        """Read conditions.npz (a plain file; arrays of numbers or booleans only, never pickles).
        Raises JobError for a missing, truncated, corrupt or oversized file."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**read_npz(path, names, optional=cls.OPTIONAL))


def _shape(name: str, arr: np.ndarray, shape: tuple) -> None:
    if arr.ndim != len(shape) or any(s != -1 and a != s for a, s in zip(arr.shape, shape)):
        want = "x".join("N" if s == -1 else str(s) for s in shape)
        raise JobError(f"conditions.npz: {name} has shape {arr.shape}, expected ({want})")
