"""Job tracks <-> screen tracks: the one conversion between the two spaces a track can live in.

Convention (the whole project's; docs/interfaces.md "Track convention"):

- A JOB TRACK (conditions.npz ``tracks``, what Blender exports, what the preview's
  ``flow.unified_flow`` takes) is OBJECT MOTION IN FRAME-0 IMAGE SPACE: ``T_f`` is where the dragged
  content would be seen at frame f if the camera stayed at frame 0. The camera's own motion is
  separate (c2w, K). A static pin is a constant track, whatever the camera does.
- A SCREEN TRACK (what a point tracker measures, what the learned models take: AnimateAnything's
  stage 1 and Wan-Move) is where the point is seen in frame f's image, camera motion included.
- The conversion: the content at the track's start pixel has frame-0 planar depth d (the depth map
  at the pixel holding ``T_0``, or the fallback plane of unified_flow). Its target ``T_f`` is lifted
  with that depth into camera 0, ``X = d K_0^-1 [T_f, 1]`` (the point moves parallel to frame 0's
  image plane, at the depth of the dragged content), and projected by camera f. This is exactly
  where unified_flow sends a drag's start pixel. Frame 0 is the identity: ``S_0 = T_0``.

Pixels: x right, y down, origin at the top-left image corner, pixel centres at i + 0.5 (a position
x lies in pixel floor(x)). Cameras as in camera.py: OpenCV c2w (F, 4, 4) (only the motion relative
to frame 0 matters), K (F, 3, 3) or (3, 3) pixels; depth is planar (along the optical axis) in scene
units, non-finite or <= 0 = far (at infinity: only the camera's rotation and zoom move it).
"""

from __future__ import annotations

import numpy as np

from .camera import _check_cameras, invert_rigid
from .flow import DEFAULT_FALLBACK_DEPTH

__all__ = ["screen_tracks", "screen_tracks_with_depth", "object_tracks", "start_inverse_depth"]

# A point is in front of a camera when its homogeneous depth q_z exceeds this (as flow.unified_flow).
_IN_FRONT = 1e-6


def _check(tracks, depth, K, c2w, fallback_depth, height, width):
    tracks = np.asarray(tracks, np.float64)
    if tracks.ndim != 3 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must have shape (P, F, 2), got {tracks.shape}")
    if not np.isfinite(tracks).all():
        raise ValueError("tracks hold NaN or infinite positions")
    c2w, K = _check_cameras(c2w, K)
    if tracks.shape[1] != c2w.shape[0]:
        raise ValueError(f"tracks have {tracks.shape[1]} frames, the camera has {c2w.shape[0]}")
    if depth is not None:
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
        if (height, width) != (None, None) and (height, width) != depth.shape:
            raise ValueError(f"depth has shape {depth.shape}, expected ({height}, {width})")
        height, width = depth.shape
    elif height is None or width is None:
        raise ValueError("height and width are needed when there is no depth map")
    w = start_inverse_depth(tracks[:, 0], depth, fallback_depth=fallback_depth, height=height, width=width)
    return tracks, K, c2w, w, int(height), int(width)


def start_inverse_depth(starts, depth, *, fallback_depth: float = 0.0, height=None, width=None) -> np.ndarray:
    """1 / frame-0 depth (P,) float64 of the content at each start position (P, 2) pixels: the depth
    map at the pixel holding it (starts outside the image take the nearest border pixel), 0 where
    that depth is far (non-finite or <= 0). Without a depth map (``depth`` None) every start lies on
    unified_flow's fallback plane: ``fallback_depth`` when > 0, else DEFAULT_FALLBACK_DEPTH."""
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    if depth is None:
        fd = float(fallback_depth) if fallback_depth and fallback_depth > 0 else DEFAULT_FALLBACK_DEPTH
        if not np.isfinite(fd):
            raise ValueError(f"fallback_depth must be finite, got {fallback_depth}")
        return np.full(starts.shape[0], 1.0 / fd)
    depth = np.asarray(depth)
    H, W = depth.shape
    ix = np.clip(np.floor(starts[:, 0]), 0, W - 1).astype(np.int64)
    iy = np.clip(np.floor(starts[:, 1]), 0, H - 1).astype(np.int64)
    d = depth[iy, ix].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(d) & (d > 0), 1.0 / d, 0.0)


def _relative(K, c2w):
    """Per frame f: H_f = K_f R_f K_0^-1 (F, 3, 3) and b_f = K_f t_f (F, 3), with [R_f | t_f] the
    camera-0-to-camera-f transform, so that a frame-0 pixel m at inverse depth w lands at
    q = H_f [m, 1] + b_f w (homogeneous; depth in camera f = q_z / w). Frame 0 is exactly I, 0."""
    T = invert_rigid(c2w) @ c2w[0]
    T[0] = np.eye(4)
    Hm = K @ T[:, :3, :3] @ np.linalg.inv(K[0])
    Hm[0] = np.eye(3)
    b = np.einsum("fij,fj->fi", K, T[:, :3, 3])
    b[0] = 0.0
    return Hm, b


def screen_tracks_with_depth(
    tracks, depth, K, c2w, *, fallback_depth: float = 0.0, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """screen_tracks plus each point's planar depth in camera f: (P, F) float32 scene units, inf for
    far content, 0 where the point is behind camera f (as UnifiedFlow.depth)."""
    tracks, K, c2w, w, H, W = _check(tracks, depth, K, c2w, fallback_depth, height, width)
    Hm, b = _relative(K, c2w)
    m = np.concatenate([tracks, np.ones(tracks.shape[:2] + (1,))], axis=-1)  # (P, F, 3)
    q = np.einsum("fij,pfj->pfi", Hm, m) + b[None] * w[:, None, None]  # (P, F, 3)
    front = q[..., 2] > _IN_FRONT
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = q[..., :2] / q[..., 2:3]
        z = q[..., 2] / w[:, None]  # inf where w == 0 (far content) and q_z > 0
    pos = np.where(front[..., None], pos, tracks[:, :1])  # behind the camera: no position (T_0, hidden)
    pos[:, 0] = tracks[:, 0]
    z = np.where(front, z, 0.0)
    inside = (pos[..., 0] >= 0) & (pos[..., 0] < W) & (pos[..., 1] >= 0) & (pos[..., 1] < H)
    return pos.astype(np.float32), front & inside, z.astype(np.float32)


def screen_tracks(
    tracks, depth, K, c2w, *, fallback_depth: float = 0.0, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Job tracks -> screen tracks (the module's conversion).

    tracks: (P, F, 2) job tracks, pixels (object motion in frame-0 image space). depth: (H, W) planar
    frame-0 depth or None (then ``height``, ``width`` are needed and the fallback plane is used, as
    in unified_flow). K: (F, 3, 3) or (3, 3); c2w: (F, 4, 4) OpenCV camera-to-world.
    Returns tracks (P, F, 2) float32 pixels in each frame's image (row 0 == the input's row 0) and
    visible (P, F) bool: in front of camera f and inside the image (0 <= x < W, 0 <= y < H). Where
    the point is behind camera f its position is meaningless and given as T_0 (visible False)."""
    pos, visible, _ = screen_tracks_with_depth(
        tracks, depth, K, c2w, fallback_depth=fallback_depth, height=height, width=width
    )
    return pos, visible


def object_tracks(
    screen, depth, K, c2w, *, fallback_depth: float = 0.0, height: int | None = None, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Screen tracks -> job tracks, the inverse of screen_tracks (e.g. to express a tracked training
    clip as a job). Each screen position S_f is cast as camera f's ray and met with the plane of the
    start's frame-0 depth in camera 0 (the plane parallel to frame 0's image that screen_tracks moves
    the point in); the meeting point seen by camera 0 is T_f. Far content (inverse depth 0) maps by
    the homography of the plane at infinity.

    screen: (P, F, 2) pixels in each frame's image; depth, K, c2w, fallback_depth, height, width as
    in screen_tracks. Returns tracks (P, F, 2) float32 job pixels (row 0 == the input's row 0) and
    ok (P, F) bool: False where the ray does not meet the plane in front of camera f (the position
    is then S_0)."""
    screen, K, c2w, w, _, _ = _check(screen, depth, K, c2w, fallback_depth, height, width)
    Hm, b = _relative(K, c2w)
    Hinv = np.linalg.inv(Hm)  # (F, 3, 3)
    s = np.concatenate([screen, np.ones(screen.shape[:2] + (1,))], axis=-1)  # (P, F, 3)
    a = np.einsum("fij,pfj->pfi", Hinv, s)  # H_f^-1 [S, 1]
    c = np.einsum("fij,fj->fi", Hinv, b)[None] * w[:, None, None]  # H_f^-1 b_f w
    # [T, 1] = lam a - c with third component 1; then q = H_f [T, 1] + b_f w = lam [S, 1]: lam = q_z.
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = (1.0 + c[..., 2]) / a[..., 2]
        m = lam[..., None] * a[..., :2] - c[..., :2]
    ok = np.isfinite(lam) & (lam > _IN_FRONT) & np.isfinite(m).all(-1)
    out = np.where(ok[..., None], m, screen[:, :1])
    out[:, 0] = screen[:, 0]
    ok[:, 0] = True
    return out.astype(np.float32), ok
