"""Camera tracks: OpenCV camera-to-world poses and pixel intrinsics, their checks and file formats.

Convention (used by every function in the core):
    * Camera axes are OpenCV's: x right, y down, z forward (the camera looks along +z).
    * Poses are camera-to-world matrices ``c2w`` (F, 4, 4) float64: a camera-frame point X_cam
      (column vector, homogeneous) maps to the world as ``X_world = c2w @ X_cam``. Their inverse is
      ``w2c``. World units are the scene's (Blender metres, or a data set's arbitrary scale).
    * Intrinsics ``K`` (F, 3, 3) float64 are in pixels of the image they belong to:
      ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``. The image origin is the top-left CORNER of the top-left
      pixel and pixel (i, j) (column i, row j) has its centre at (i + 0.5, j + 0.5): a point on the optical
      axis with cx = W / 2 lands at u = W / 2, on the edge between the two middle pixels. This is
      Blender's and CameraCtrl's convention.
    * Projection: ``[u, v, 1]^T ~ K @ (w2c @ X_world)[:3]``; depth z is the camera-frame z coordinate
      (distance along the optical axis, "planar depth"), not the distance to the camera centre.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = [
    "CameraError",
    "CameraTrack",
    "invert_rigid",
    "relative_to_first",
    "rescale_intrinsics",
    "project_points",
    "pixel_centers",
    "read_realestate10k",
    "write_realestate10k",
]

# Tolerance of the orthonormality check of rotations (max |R^T R - I|). Blender's float32 matrices
# carry ~1e-7 of error; 1e-4 also accepts poses written with 6 decimals (RealEstate10K files).
ROTATION_TOLERANCE = 1e-4


class CameraError(ValueError):
    """Invalid camera data; the message says which frame and what to change."""


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms (..., 4, 4) float64 [R t; 0 1] -> [R^T  -R^T t; 0 1].

    Exact for rotations (no general matrix inverse), so c2w <-> w2c round trips stay orthonormal."""
    T = np.asarray(T, np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros(T.shape, np.float64)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def relative_to_first(c2w: np.ndarray) -> np.ndarray:
    """Poses relative to frame 0: ``c2w_rel[i] = w2c[0] @ c2w[i]`` (CameraCtrl's rule).

    c2w: (F, 4, 4) OpenCV camera-to-world. Returns (F, 4, 4) float64 whose frame 0 is the identity;
    the relative motion between any two frames is unchanged, and so is every result that depends only
    on it (flow, relative Plücker embedding). The world becomes frame 0's camera frame."""
    c2w = _check_poses(c2w)
    rel = invert_rigid(c2w[0]) @ c2w
    rel[0] = np.eye(4)
    return rel


def rescale_intrinsics(
    K: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int], *, mode: str = "crop"
) -> np.ndarray:
    """Intrinsics of the same camera for an image resized from ``src_wh`` to ``dst_wh`` (width, height).

    K: (3, 3) or (F, 3, 3) pixels of the source image. Returns the same shape, float64, pixels of the
    destination image.

    mode "crop" (default): the source is scaled uniformly by ``s = max(dst_w / src_w, dst_h / src_h)``
    so that it covers the destination, then centre-cropped. That is the usual resize-then-centre-crop of
    image pipelines and CameraCtrl's rule when the aspect ratio changes; when the aspect is the same it
    is a plain resize. mode "stretch": each axis is scaled on its own (``fx *= dst_w / src_w``,
    ``fy *= dst_h / src_h``), matching a resize that ignores the aspect ratio.

    Convention: continuous pixel coordinates with the origin at the image corner (pixel centres at
    i + 0.5) scale linearly: ``u' = s * u - crop_x`` with ``crop_x = (s * src_w - dst_w) / 2``. For the
    reduced-size Plücker embedding of an encoder that downsamples by 8, pass ``dst_wh = (W // 8, H // 8)``.
    """
    K = np.asarray(K, np.float64)
    if K.shape[-2:] != (3, 3):
        raise CameraError(f"K must have shape (3, 3) or (F, 3, 3), got {K.shape}")
    sw, sh = (float(x) for x in src_wh)
    dw, dh = (float(x) for x in dst_wh)
    if min(sw, sh, dw, dh) <= 0:
        raise CameraError(f"image sizes must be positive, got {src_wh} -> {dst_wh}")
    if mode == "crop":
        sx = sy = max(dw / sw, dh / sh)
        ox, oy = (sx * sw - dw) / 2.0, (sy * sh - dh) / 2.0
    elif mode == "stretch":
        sx, sy = dw / sw, dh / sh
        ox = oy = 0.0
    else:
        raise CameraError(f"mode must be 'crop' or 'stretch', got {mode!r}")
    out = K.copy()
    out[..., 0, :] *= sx
    out[..., 1, :] *= sy
    out[..., 0, 2] -= ox
    out[..., 1, 2] -= oy
    out[..., 2, :] = K[..., 2, :]
    return out


def project_points(X_world: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into one camera.

    X_world: (N, 3) world units. c2w: (4, 4) OpenCV camera-to-world. K: (3, 3) pixels.
    Returns ``uv`` (N, 2) float64 pixel coordinates (origin at the top-left image corner, pixel centres
    at i + 0.5) and ``z`` (N,) float64, the depth along the optical axis. Points with z <= 0 lie behind
    the camera: their uv is meaningless (computed with the same formula; inf at z == 0) and callers
    must drop them."""
    X = np.asarray(X_world, np.float64)
    if X.ndim != 2 or X.shape[1] != 3:
        raise CameraError(f"X_world must have shape (N, 3), got {X.shape}")
    c2w = np.asarray(c2w, np.float64)
    K = np.asarray(K, np.float64)
    if c2w.shape != (4, 4) or K.shape != (3, 3):
        raise CameraError(f"project_points needs c2w (4, 4) and K (3, 3); got {c2w.shape}, {K.shape}")
    w2c = invert_rigid(c2w)
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    p = Xc @ K.T
    z = Xc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = p[:, :2] / p[:, 2:3]
    return uv, z


def pixel_centers(height: int, width: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``u`` (1, W) = i + 0.5 and ``v`` (H, 1) = j + 0.5, broadcastable."""
    u = (np.arange(width, dtype=dtype) + 0.5)[None, :]
    v = (np.arange(height, dtype=dtype) + 0.5)[:, None]
    return u, v


@dataclass(eq=False)  # arrays do not compare with ==
class CameraTrack:
    """A camera over F frames.

    c2w: (F, 4, 4) float64 OpenCV camera-to-world. K: (F, 3, 3) float64 pixels of a ``width`` x
    ``height`` image. ``timestamps_us`` (F,) int64 microseconds and ``url`` are kept from (and written
    to) RealEstate10K files; they are optional."""

    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    timestamps_us: np.ndarray | None = None
    url: str = ""

    def __post_init__(self):
        self.c2w = np.asarray(self.c2w, np.float64)
        self.K = np.asarray(self.K, np.float64)
        if self.K.ndim == 2 and self.c2w.ndim == 3:  # one K for every frame
            self.K = np.broadcast_to(self.K, (self.c2w.shape[0], 3, 3)).copy()

    @property
    def num_frames(self) -> int:
        return int(self.c2w.shape[0])

    @property
    def w2c(self) -> np.ndarray:
        """(F, 4, 4) world-to-camera."""
        return invert_rigid(self.c2w)

    def validate(self) -> CameraTrack:
        """Check shapes, finiteness, rigid poses (orthonormal rotations with det +1, last row 0 0 0 1),
        positive focal lengths and image size; raise CameraError naming the first bad frame."""
        if not (isinstance(self.width, int | np.integer) and isinstance(self.height, int | np.integer)):
            raise CameraError(f"width and height must be integers, got {self.width!r}, {self.height!r}")
        if self.width <= 0 or self.height <= 0:
            raise CameraError(f"image size must be positive, got {self.width}x{self.height}")
        _check_poses(self.c2w)
        _check_intrinsics(self.K, self.num_frames)
        if self.timestamps_us is not None and np.shape(self.timestamps_us) != (self.num_frames,):
            raise CameraError(
                f"timestamps_us must have one entry per frame ({self.num_frames}), "
                f"got shape {np.shape(self.timestamps_us)}"
            )
        return self

    def relative(self) -> CameraTrack:
        """The same track with poses relative to frame 0 (frame 0 becomes the identity)."""
        return replace(self, c2w=relative_to_first(self.c2w))

    def resized(self, width: int, height: int, *, mode: str = "crop") -> CameraTrack:
        """The same cameras for a ``width`` x ``height`` image (see rescale_intrinsics for ``mode``)."""
        K = rescale_intrinsics(self.K, (self.width, self.height), (width, height), mode=mode)
        return replace(self, K=K, width=int(width), height=int(height))


def _check_poses(c2w) -> np.ndarray:
    c2w = np.asarray(c2w, np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or c2w.shape[0] < 1:
        raise CameraError(f"c2w must have shape (F, 4, 4) with F >= 1, got {c2w.shape}")
    bad = ~np.isfinite(c2w).all(axis=(1, 2))
    if bad.any():
        raise CameraError(f"c2w of frame {int(np.argmax(bad))} holds NaN or infinite values")
    last = np.abs(c2w[:, 3] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    if (last > 1e-6).any():
        f = int(np.argmax(last > 1e-6))
        raise CameraError(
            f"c2w of frame {f} is not rigid: its last row is {c2w[f, 3].tolist()}, expected [0, 0, 0, 1]"
        )
    R = c2w[:, :3, :3]
    err = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    if (err > ROTATION_TOLERANCE).any():
        f = int(np.argmax(err))
        raise CameraError(
            f"the rotation of c2w frame {f} is not orthonormal (max |R^T R - I| = {err[f]:.3g}): "
            "remove scale and shear from the camera (apply scale in Blender, or orthonormalise the matrix)"
        )
    det = np.linalg.det(R)
    if (det < 0).any():
        f = int(np.argmax(det < 0))
        raise CameraError(f"the rotation of c2w frame {f} is a reflection (det {det[f]:.3g})")
    return c2w


def _check_cameras(c2w, K) -> tuple[np.ndarray, np.ndarray]:
    """Checked (c2w (F, 4, 4), K (F, 3, 3)) float64, K contiguous; a (3, 3) K serves every frame."""
    c2w = _check_poses(c2w)
    K = np.asarray(K, np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (c2w.shape[0], 3, 3))
    _check_intrinsics(K, c2w.shape[0])
    return c2w, np.ascontiguousarray(K)


def _check_intrinsics(K, num_frames: int) -> np.ndarray:
    K = np.asarray(K, np.float64)
    if K.shape != (num_frames, 3, 3):
        raise CameraError(f"K must have shape ({num_frames}, 3, 3), got {K.shape}")
    if not np.isfinite(K).all():
        f = int(np.argmax(~np.isfinite(K).all(axis=(1, 2))))
        raise CameraError(f"K of frame {f} holds NaN or infinite values")
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        f = int(np.argmax((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)))
        raise CameraError(f"K of frame {f} has a focal length <= 0 (fx={K[f, 0, 0]}, fy={K[f, 1, 1]})")
    lower = np.abs(K[:, [1, 2, 2, 2], [0, 0, 1, 2]] - np.array([0.0, 0.0, 0.0, 1.0])).max(axis=1)
    if (lower > 1e-9).any():
        f = int(np.argmax(lower > 1e-9))
        raise CameraError(f"K of frame {f} is not an upper-triangular pinhole matrix with K[2] = [0, 0, 1]")
    return K


# --- RealEstate10K --------------------------------------------------------------------------------------
# A pose file: line 1 is the video URL; each further line is
#   timestamp_us fx fy cx cy 0 0 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3
# with fx, cx divided by the image width, fy, cy by the height, and a 3x4 WORLD-TO-CAMERA matrix in
# row-major order (OpenCV axes).


def read_realestate10k(
    path: str | os.PathLike,
    width: int = 720,
    height: int = 480,
    *,
    source_size: tuple[int, int] | None = None,
) -> CameraTrack:
    """Read a RealEstate10K camera file into a CameraTrack for a ``width`` x ``height`` image.

    Normalised intrinsics become pixels of the target image. When ``source_size`` = (w, h) of the
    original video is given and its aspect differs from the target's, the video is taken to be resized
    and centre-cropped to the target (rescale_intrinsics, mode "crop"), as CameraCtrl does; without it
    the normalised intrinsics are applied to the target size directly. Returns a validated track with
    ``timestamps_us`` and ``url`` filled in."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CameraError(f"cannot read the RealEstate10K file {path}: {exc}") from exc
    lines = [ln.strip() for ln in lines]
    if not lines:
        raise CameraError(f"{path} is empty: a RealEstate10K file starts with a URL line")
    url, rows = lines[0], []
    for n, ln in enumerate(lines[1:], start=2):
        if not ln:
            continue
        parts = ln.split()
        if len(parts) != 19:
            raise CameraError(f"{path} line {n}: expected 19 numbers (time, fx fy cx cy 0 0, 3x4 matrix)")
        try:
            rows.append([float(x) for x in parts])
        except ValueError as exc:
            raise CameraError(f"{path} line {n}: {exc}") from None
    if not rows:
        raise CameraError(f"{path} holds no camera lines")
    a = np.array(rows, np.float64)
    F = a.shape[0]
    w2c = np.tile(np.eye(4), (F, 1, 1))
    w2c[:, :3, :4] = a[:, 7:19].reshape(F, 3, 4)
    sw, sh = (width, height) if source_size is None else source_size
    sw, sh = float(sw), float(sh)
    K = np.zeros((F, 3, 3))
    K[:, 0, 0] = a[:, 1] * sw
    K[:, 1, 1] = a[:, 2] * sh
    K[:, 0, 2] = a[:, 3] * sw
    K[:, 1, 2] = a[:, 4] * sh
    K[:, 2, 2] = 1.0
    if source_size is not None:
        K = rescale_intrinsics(K, (sw, sh), (width, height), mode="crop")
    try:
        _check_poses(w2c)
    except CameraError as exc:
        raise CameraError(f"{path}: {exc}".replace("c2w", "world-to-camera matrix")) from None
    track = CameraTrack(
        c2w=invert_rigid(w2c),
        K=K,
        width=int(width),
        height=int(height),
        timestamps_us=np.round(a[:, 0]).astype(np.int64),
        url=url,
    )
    return track.validate()


def write_realestate10k(
    path: str | os.PathLike,
    track: CameraTrack,
    timestamps_us=None,
    *,
    url: str | None = None,
    fps: float = 30.0,
) -> None:
    """Write ``track`` as a RealEstate10K camera file (atomically).

    Intrinsics are normalised by the track's width and height (skew is not representable and must be 0);
    poses are written as 3x4 world-to-camera rows with 9 significant digits. ``timestamps_us`` (F,)
    defaults to the track's own, else frame / ``fps`` in microseconds. ``url`` defaults to the track's."""
    from .atomic import atomic_write

    track.validate()
    K = track.K
    if np.abs(K[:, 0, 1]).max() > 1e-9:
        raise CameraError("RealEstate10K files cannot store a skewed K (K[0, 1] != 0)")
    F = track.num_frames
    if timestamps_us is None:
        timestamps_us = track.timestamps_us
    if timestamps_us is None:
        timestamps_us = np.round(np.arange(F) * 1e6 / fps)
    ts = np.asarray(timestamps_us, np.float64)
    if ts.shape != (F,):
        raise CameraError(f"timestamps_us must have shape ({F},), got {ts.shape}")
    w2c = track.w2c
    lines = [(url if url is not None else track.url) or "https://example.invalid/unknown"]
    for f in range(F):
        w, h = track.width, track.height
        intr = (K[f, 0, 0] / w, K[f, 1, 1] / h, K[f, 0, 2] / w, K[f, 1, 2] / h)
        nums = [f"{v:.9g}" for v in intr] + ["0", "0"] + [f"{v:.9g}" for v in w2c[f, :3, :4].ravel()]
        lines.append(f"{int(ts[f])} " + " ".join(nums))
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
