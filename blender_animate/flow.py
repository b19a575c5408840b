"""Optical flow of frame 0's pixels: sparse flow from tracks, camera flow from depth, unified flow.

Convention: forward flow from frame 0 to frame f, (F, H, W, 2) float32 pixels, channel 0 = x (right),
channel 1 = y (down); ``flow[f, j, i]`` is where the content of frame 0's pixel (i, j) - centre
(i + 0.5, j + 0.5) - has moved in frame f, minus that centre. ``flow[0] == 0``. Cameras and depth
follow camera.py: OpenCV c2w (F, 4, 4), K (F, 3, 3) in pixels, planar depth (distance along the
optical axis) in scene units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .camera import _check_cameras, invert_rigid
from .drags import DEFAULT_OBJECT_MAX_SHARE, REGION_FEATHER, DragField, _start_pixels, drag_field
from .tracks import DEFAULT_RADIUS

__all__ = [
    "DEFAULT_FALLBACK_DEPTH",
    "REGION_FEATHER",
    "UnifiedFlow",
    "sparse_flow",
    "gaussian_sparse_flow",
    "camera_flow",
    "drag_field",
    "DragField",
    "unified_flow",
]

# Where there is no depth map, frame 0 is taken to be a fronto-parallel plane at this distance when
# the job gives none (scene units): Blender's default camera focus distance.
DEFAULT_FALLBACK_DEPTH = 10.0


@dataclass
class UnifiedFlow:
    """Result of unified_flow.

    flow: (F, H, W, 2) float32 forward flow of every frame-0 pixel (module convention).
    depth: (F, H, W) float32 planar depth of that pixel's point in frame f's camera (scene units), for
        z-ordering when splatting: smaller is nearer. Pixels without depth ("far": sky, background) are
        at infinity (``inf``), so compare depths, never normalise by their maximum. 0 where the point is
        behind frame f's camera.
    valid: (F, H, W) bool, the point is in front of frame f's camera and lands inside the image.
    warnings: human-readable notes (fallback depth used, regions without drags, ...).
    """

    flow: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    warnings: list[str] = field(default_factory=list)


# --- sparse flow from tracks (the paper's Eq. 3) -------------------------------------------------------


def _check_tracks(tracks, visible, num_frames=None):
    tracks = np.asarray(tracks, np.float32)
    if tracks.ndim != 3 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must have shape (P, F, 2), got {tracks.shape}")
    if num_frames is not None and tracks.shape[1] != num_frames:
        raise ValueError(f"tracks have {tracks.shape[1]} frames, the camera has {num_frames}")
    if visible is None:
        visible = np.ones(tracks.shape[:2], bool)
    visible = np.asarray(visible, bool)
    if visible.shape != tracks.shape[:2]:
        raise ValueError(f"visible must have shape {tracks.shape[:2]}, got {visible.shape}")
    if not np.isfinite(tracks).all():
        raise ValueError("tracks hold NaN or infinite positions")
    return tracks, visible


def sparse_flow(tracks, visible, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse flow of the paper's Eq. 3 (as MOFA-Video): each track writes, at the pixel holding its
    frame-0 position, its cumulative displacement ``T_f - T_0`` in every frame where it is visible.

    tracks: (P, F, 2) pixels; visible: (P, F) bool or None (all visible). Tracks starting outside the
    image write nothing. Where several tracks start in the same pixel their displacements are averaged.
    Returns flow (F, H, W, 2) float32 (zero elsewhere) and mask (F, H, W) bool (True where written)."""
    tracks, visible = _check_tracks(tracks, visible)
    P, F = tracks.shape[:2]
    flow = np.zeros((F, height, width, 2), np.float32)
    mask = np.zeros((F, height, width), bool)
    ix, iy, inside = _start_pixels(tracks, height, width)
    use = visible & inside[:, None]  # (P, F)
    if not use.any():
        return flow, mask
    p_idx, f_idx = np.nonzero(use)
    flat = (f_idx * height + iy[p_idx]) * width + ix[p_idx]
    disp = (tracks[p_idx, f_idx] - tracks[p_idx, 0]).astype(np.float64)
    uniq, inv = np.unique(flat, return_inverse=True)
    count = np.bincount(inv)
    f2 = flow.reshape(-1, 2)
    f2[uniq, 0] = np.bincount(inv, disp[:, 0]) / count
    f2[uniq, 1] = np.bincount(inv, disp[:, 1]) / count
    mask.reshape(-1)[uniq] = True
    return flow, mask


def gaussian_sparse_flow(
    tracks, visible, height: int, width: int, *, kernel_size: int = 99, sigma: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3's sparse flow spread by a peak-normalised Gaussian (Tora: 99 / 10, DragNUWA: 199 / 20).

    Each track's displacement ``T_f - T_0`` (visible frames only) is written with weight
    ``g = exp(-r^2 / (2 sigma^2))`` (r in pixels from the centre of its start pixel) over a
    ``kernel_size`` x ``kernel_size`` window, i.e. the Eq. 3 map convolved with the kernel. Where the
    kernels of several tracks overlap and their weights sum to more than 1, values and weights are
    divided by that sum (an average instead of a sum, so two drags never double a motion). Tracks
    that start outside the image write nothing, as in sparse_flow.
    Returns flow (F, H, W, 2) float32 and weight (F, H, W) float32 in [0, 1] (the spread mask)."""
    tracks, visible = _check_tracks(tracks, visible)
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 pixels, got {sigma}")
    P, F = tracks.shape[:2]
    flow = np.zeros((F, height, width, 2), np.float32)
    weight = np.zeros((F, height, width), np.float32)
    half = int(kernel_size) // 2
    r = np.arange(-half, half + 1, dtype=np.float32)
    g1 = np.exp(-(r**2) / np.float32(2 * sigma**2))
    ix, iy, inside = _start_pixels(tracks, height, width)
    disp = (tracks - tracks[:, :1]) * visible[..., None]  # (P, F, 2)
    box = [height, width, 0, 0]  # union of the windows: y0, x0, y1, x1
    for p in range(P):
        y0, y1 = max(iy[p] - half, 0), min(iy[p] + half + 1, height)
        x0, x1 = max(ix[p] - half, 0), min(ix[p] + half + 1, width)
        if not inside[p] or not visible[p].any():  # as in Eq. 3: only tracks that start in the image
            continue
        g = np.outer(g1[y0 - iy[p] + half : y1 - iy[p] + half], g1[x0 - ix[p] + half : x1 - ix[p] + half])
        # One channel at a time: numpy is slow when the innermost loop runs over the 2 channels.
        for c in range(2):
            flow[:, y0:y1, x0:x1, c] += g[None] * disp[p, :, c, None, None]
        weight[:, y0:y1, x0:x1] += g[None] * visible[p, :, None, None].astype(np.float32)
        box = [min(box[0], y0), min(box[1], x0), max(box[2], y1), max(box[3], x1)]
    if box[0] < box[2]:
        sl = (slice(None), slice(box[0], box[2]), slice(box[1], box[3]))
        w = weight[sl]
        over = w > 1.0  # only where kernels overlap with a total weight above 1
        if over.any():
            norm = w[over]
            for c in range(2):
                fc = flow[sl + (c,)]
                fc[over] /= norm
            w[over] = 1.0
    return flow, weight


# --- camera flow from depth ----------------------------------------------------------------------------


def inverse_depth(depth):
    """1 / depth as float32, 0 where the depth is not finite and positive (a point at infinity)."""
    d = np.asarray(depth, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        invd = np.where(np.isfinite(d) & (d > 0), np.float32(1.0) / d, np.float32(0.0))
    return invd.astype(np.float32, copy=False)


def _project_frames(invd, K, c2w, correction=None, kernels=None):
    """The work shared by camera_flow and unified_flow.

    A frame-0 pixel (u, v) with inverse depth w = 1/d is the camera-0 point X0 = d K0^-1 [u, v, 1].
    In frame f, with T_f = w2c[f] @ c2w[0] = [R_f | t_f]:  K_f T_f X0 = d (H_f [u, v, 1] + b_f w) with
    H_f = K_f R_f K0^-1 (the homography of the plane at infinity) and b_f = K_f t_f. So with
    q = H_f [u, v, 1] + b_f w: position (q_x / q_z, q_y / q_z), depth z_f = q_z / w (inf for w = 0).
    ``correction(f, H_f, qx, qy, qz)`` may add to q in place before the division (the drag term).
    ``kernels``: None (numpy here), or an object whose ``points(invd, rows, cols, b, has_b, q)`` and
    ``finish(q, invd, u, v, flow, depth, valid)`` do the two halves of the loop body below with the
    same float32 operations, one pass each (the generator's numba build: backend/flow_kernel.py)."""
    height, width = invd.shape
    F = c2w.shape[0]
    T = invert_rigid(c2w) @ c2w[0]
    T[0] = np.eye(4)
    Hm = K @ T[:, :3, :3] @ np.linalg.inv(K[0])
    b = np.einsum("fij,fj->fi", K, T[:, :3, 3])
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    u32 = u.astype(np.float32)[None, :]
    v32 = v.astype(np.float32)[:, None]
    flow = np.empty((F, height, width, 2), np.float32)
    depth = np.empty((F, height, width), np.float32)
    valid = np.empty((F, height, width), bool)
    q = np.empty((3, height, width), np.float32)
    rows = np.empty((3, width), np.float32)
    cols = np.empty((3, height), np.float32)
    tmp = np.empty((height, width), np.float32)
    ok = np.empty((height, width), bool)
    bad = np.empty((height, width), bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for f in range(F):
            if f == 0:  # frame 0's own camera: q = [u, v, 1], every pixel in view at its depth
                np.divide(np.float32(1.0), invd, out=depth[0])
                valid[0] = True
                continue
            for c in range(3):
                rows[c] = Hm[f, c, 0] * u + Hm[f, c, 2]
                cols[c] = Hm[f, c, 1] * v
            if kernels is not None:
                kernels.points(invd, rows, cols, b[f].astype(np.float32), b[f] != 0.0, q)
            else:
                for c in range(3):
                    np.add(rows[c][None, :], cols[c][:, None], out=q[c])
                    if b[f, c] != 0.0:
                        np.multiply(invd, np.float32(b[f, c]), out=tmp)
                        q[c] += tmp
            if correction is not None:
                correction(f, Hm[f], q[0], q[1], q[2])
            if kernels is not None:
                kernels.finish(q, invd, u32[0], v32[:, 0], flow[f], depth[f], valid[f])
                continue
            qx, qy, qz = q
            # In view: 0 <= x < W and 0 <= y < H; in front: q_z > 0 (z_f and d have the same sign).
            np.divide(qx, qz, out=tmp)
            np.greater_equal(tmp, 0, out=ok)
            np.less(tmp, width, out=bad)
            ok &= bad
            np.subtract(tmp, u32, out=flow[f, :, :, 0])
            np.divide(qy, qz, out=tmp)
            np.greater_equal(tmp, 0, out=bad)
            ok &= bad
            np.less(tmp, height, out=bad)
            ok &= bad
            np.subtract(tmp, v32, out=flow[f, :, :, 1])
            np.greater(qz, 1e-6, out=bad)
            np.logical_and(ok, bad, out=valid[f])
            np.divide(qz, invd, out=depth[f])
            np.logical_not(bad, out=bad)
            if bad.any():  # behind the camera: no meaningful position
                flow[f][bad] = 0.0
                depth[f][bad] = 0.0
    flow[0] = 0.0
    return flow, depth, valid


def camera_flow(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, *, inverse=None, kernels=None):
    """Exact forward flow of a static scene seen by a moving camera.

    depth: (H, W) planar depth of frame 0 (scene units; non-finite or <= 0 values mean "far": the point
    is at infinity, so only the camera's rotation and zoom move it). K: (F, 3, 3) or (3, 3) pixels of
    the H x W image. c2w: (F, 4, 4) OpenCV camera-to-world (absolute or relative: only the motion
    relative to frame 0 matters).
    Returns flow (F, H, W, 2) float32, depth (F, H, W) float32 (planar depth in frame f's camera, inf
    for far points, 0 behind the camera) and valid (F, H, W) bool (in front of the camera and inside
    the image). Flow of points behind the camera is 0; points out of view keep their true flow.
    inverse, kernels: as in unified_flow."""
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    c2w, K = _check_cameras(c2w, K)
    invd = inverse_depth(depth) if inverse is None else inverse
    return _project_frames(invd, K, c2w, kernels=kernels)


# --- drags and the unified flow ------------------------------------------------------------------------


def unified_flow(
    depth,
    K,
    c2w,
    tracks=None,
    visible=None,
    radius=None,
    region_masks=None,
    *,
    fallback_depth: float = 0.0,
    height: int | None = None,
    width: int | None = None,
    region_feather: int = REGION_FEATHER,
    object_ids=None,
    object_max_share: float = DEFAULT_OBJECT_MAX_SHARE,
    object_names=None,
    drags: DragField | None = None,
    inverse: np.ndarray | None = None,
    kernels=None,
) -> UnifiedFlow:
    """Camera motion and drags as one forward flow of frame 0's pixels (stage 1 of the method).

    depth: (H, W) planar depth of frame 0 (scene units; non-finite or <= 0 = far), or None: then the
    scene is a fronto-parallel plane at ``fallback_depth`` (if <= 0, DEFAULT_FALLBACK_DEPTH = 10 scene
    units, Blender's default focus distance) and a warning says so; ``height`` and ``width`` must then
    be given. K: (F, 3, 3) or (3, 3) pixels; c2w: (F, 4, 4) OpenCV camera-to-world. tracks (P, F, 2)
    pixels of frame 0's image, radius (P,) pixels, region_masks (R, H, W) bool or None, object_ids
    (H, W) integers or None with object_max_share and object_names: see drags.drag_field for which
    pixels follow which drag (outline, object, disc) and how (fitted motion). ``drags``: that
    DragField computed once beforehand (then tracks give only the frames, and radius, region_masks
    and the object arguments are not used). ``visible`` is accepted for symmetry with sparse_flow
    and not used: a drag keeps moving its pixels when its point leaves the image. ``inverse``:
    inverse_depth(depth), when the caller has it already (one frame at a time: computed once).
    ``kernels``: a compiled projection with numpy's bits (see _project_frames), or None.

    The rule. Let D_f(x) be the weighted drag displacement of pixel x at frame f (drags.DragField;
    it is ``T_f - T_0`` at a drag's start point when one drag drives its mover). The pixel is
    first moved in FRAME-0 IMAGE SPACE to m = x + D_f(x), lifted to 3D with its own frame-0 depth,
    d(x) K0^-1 [m, 1] in camera 0's frame, and that point is projected by camera f. So a drag
    describes object motion in the scene (parallel to frame 0's image plane, at the depth of the
    dragged content) and the moving camera films it: with a static camera the pixel lands exactly
    at m, and a drag's start point always lands at its target ``T_f`` as seen by camera f (the
    projection of T_f lifted with the start point's depth). Pixels no drag touches get the exact
    camera flow. Because projection is linear in homogeneous coordinates, this is the camera flow
    plus a correction ``H_f [D_f, 0]`` on the pixels that move.

    Returns UnifiedFlow(flow (F, H, W, 2) float32, depth (F, H, W) float32, valid (F, H, W) bool,
    warnings) as documented on UnifiedFlow."""
    warnings: list[str] = []
    c2w, K = _check_cameras(c2w, K)
    F = c2w.shape[0]
    if depth is None:
        if height is None or width is None:
            raise ValueError("unified_flow needs height and width when there is no depth map")
        fd = float(fallback_depth) if fallback_depth and fallback_depth > 0 else DEFAULT_FALLBACK_DEPTH
        if not np.isfinite(fd):
            raise ValueError(f"fallback_depth must be finite, got {fallback_depth}")
        invd = np.full((int(height), int(width)), np.float32(1.0 / fd), np.float32)
        how = "the job's fallback_depth" if fallback_depth and fallback_depth > 0 else "the default"
        warnings.append(
            f"no depth map: the scene is treated as a flat plane {fd:g} scene units in front of the camera "
            f"({how}); camera translation parallax will be approximate. Render a depth pass or set "
            "fallback_depth to the subject's distance."
        )
    else:
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
        if (height, width) != (None, None) and (height, width) != depth.shape:
            raise ValueError(f"depth has shape {depth.shape}, expected ({height}, {width})")
        invd = inverse_depth(depth) if inverse is None else inverse
        if not (invd > 0).any():
            warnings.append("the depth map has no finite positive value: everything is treated as far away")
    H, W = invd.shape
    correction = None
    if drags is None and tracks is not None and np.asarray(tracks).shape[0] > 0:
        tracks, _ = _check_tracks(tracks, visible, F)
        if radius is None:
            radius = np.full(tracks.shape[0], DEFAULT_RADIUS, np.float32)
        radius = np.asarray(radius, np.float32)
        if radius.shape not in ((), (tracks.shape[0],)) or not (np.isfinite(radius) & (radius > 0)).all():
            raise ValueError(f"radius must be one number > 0 per track ({tracks.shape[0]}), got {radius}")
        drags = drag_field(
            tracks,
            radius,
            region_masks,
            H,
            W,
            region_feather=region_feather,
            object_ids=object_ids,
            object_max_share=object_max_share,
            object_names=object_names,
        )
        warnings += drags.warnings
    elif drags is None and region_masks is not None and np.asarray(region_masks).shape[0] > 0:
        warnings.append("region masks were given without drags; they do not move")
    if drags is not None and drags.support.size:
        if drags.motion.shape[1] != F:
            raise ValueError(f"the drag field has {drags.motion.shape[1]} frames, the camera has {F}")
        support = drags.support

        def correction(f, Hf, qx, qy, qz):
            delta = drags.image_delta(f, Hf[:, :2])  # (N, 3)
            for c, qc in enumerate((qx, qy, qz)):
                flat = qc.reshape(-1)
                flat[support] += delta[:, c]

    flow, depth_f, valid = _project_frames(invd, K, c2w, correction, kernels)
    return UnifiedFlow(flow, depth_f, valid, warnings)
