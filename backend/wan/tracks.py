"""Wan-Move track conditioning: point tracks copy frame 0's latent features along each track.

Wan-Move (Ruihang/Wan-Move-14B-480P, Apache-2.0) is a full fine-tune of Wan2.1-I2V-14B-480P with the
stock architecture; the motion enters through the image-conditioning latent only: for every track
visible at latent frame k, the latent feature of frame 0 at the track's start cell is written into
latent frame k at the track's cell there. The conditional pass sees this latent; the unconditional
pass (classifier-free guidance) sees the original one.

Tracks come from the job in two ways (`job_tracks`), both as SCREEN tracks (where the point is
seen in frame f's image, camera motion included: the model-input side of the track convention,
blender_animate/track_space.py): the drags, converted from the job's frame-0 object space by
`track_space.screen_tracks` (the target lifted with its start pixel's depth and projected by camera
f: where the preview's unified flow sends the drag's start pixel), and the camera (plus everything
the unified flow moves) as a grid of frame-0 pixels carried by the unified flow. A point is visible
in frame f where the unified flow is valid there (in front of camera f and inside the image) and
nothing nearer lands on it: a z-buffer of the unified flow's per-frame depth over cells of
`OCCLUSION_CELL` pixels, a point hidden when that cell holds content nearer than its own depth by
more than `OCCLUSION_MARGIN` (relative). Frame 0 is the reference image itself: no occlusion test
there (a point is visible in it when it starts inside the image).

Conventions:
    tracks (N, F, 2) float pixels (x right, y down, pixel centres at i + 0.5 as in the core, so a
        point at x lies in pixel floor(x)); visible (N, F) bool; F = the video's frames.
    latent condition (B, C, K, h, w) (Wan's layout); latent frame k stands for pixel frame
        temporal x k; a point at pixel x lies in latent cell floor(x / spatial).
"""

from __future__ import annotations

import numpy as np
import torch

from blender_animate.track_space import screen_tracks_with_depth

# Grid spacing of camera tracks in pixels (one point per 16 x 16 block: two latent cells of Wan 2.1).
GRID_STEP = 16
# Occlusion test: z-buffer cell in pixels (coarse enough that a surface magnified up to about 4x
# still covers every cell it lands on; content within one cell of a nearer edge counts as hidden),
# and how much nearer (relative depth) content must be to hide a point.
OCCLUSION_CELL = 4
OCCLUSION_MARGIN = 0.1


def resample_tracks(
    tracks: np.ndarray, visible: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly resample (N, F, 2) tracks and (N, F) visibility to `num_frames` frames over the same
    time span (visibility: a resampled frame is visible when both neighbours are)."""
    N, F = visible.shape
    if F == num_frames:
        return tracks.astype(np.float32), visible.astype(bool)
    t = np.linspace(0, F - 1, num_frames)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, F - 1)
    a = (t - lo)[None, :, None]
    out = (1 - a) * tracks[:, lo] + a * tracks[:, hi]
    return out.astype(np.float32), visible[:, lo] & visible[:, hi]


def _grid(height: int, width: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (N,) of the grid's frame-0 pixels, every `step` pixels from step // 2."""
    ys, xs = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    return ys.reshape(-1), xs.reshape(-1)


def _inside(tracks: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y = tracks[..., 0], tracks[..., 1]
    return (x >= 0) & (x < width) & (y >= 0) & (y < height)


def grid_tracks(flow: np.ndarray, valid: np.ndarray, step: int = GRID_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Camera (+ scene) tracks: a grid of frame-0 pixel centres every `step` pixels carried by the
    unified flow (F, H, W, 2) (screen tracks); visible where `valid` (F, H, W) bool and inside."""
    F, H, W = flow.shape[:3]
    ys, xs = _grid(H, W, step)
    start = np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float32)  # (N, 2)
    tracks = start[:, None, :] + flow[:, ys, xs].transpose(1, 0, 2)  # (N, F, 2)
    vis = valid[:, ys, xs].T.copy()
    vis &= _inside(tracks, H, W)
    return tracks.astype(np.float32), vis


def zbuffer(flow: np.ndarray, depth: np.ndarray, cell: int = OCCLUSION_CELL) -> np.ndarray:
    """Nearest depth of frame-0 content landing in each `cell` x `cell` block of one frame.

    flow: (H, W, 2) the unified flow of that frame; depth: (H, W) its depth in that frame's camera
    (UnifiedFlow.depth: inf far, <= 0 behind the camera: left out). Returns (ceil(H / cell),
    ceil(W / cell)) float32, inf where nothing lands."""
    H, W = depth.shape
    gh, gw = -(-H // cell), -(-W // cell)
    x = flow[..., 0] + (np.arange(W, dtype=np.float32) + 0.5)[None, :]
    y = flow[..., 1] + (np.arange(H, dtype=np.float32) + 0.5)[:, None]
    ok = (depth > 0) & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    idx = (y[ok] // cell).astype(np.int64) * gw + (x[ok] // cell).astype(np.int64)
    z = np.full(gh * gw, np.inf, np.float32)
    np.minimum.at(z, idx, depth[ok].astype(np.float32))
    return z.reshape(gh, gw)


def unoccluded(
    positions: np.ndarray,
    point_depth: np.ndarray,
    zbuf: np.ndarray,
    cell: int = OCCLUSION_CELL,
    margin: float = OCCLUSION_MARGIN,
) -> np.ndarray:
    """(N,) bool: no content in the z-buffer cell of each position (N, 2) pixels is nearer than the
    point's own depth (N,) by more than `margin` (relative; far points at inf are hidden by anything
    finite). Positions outside the z-buffer count as unoccluded (the caller checks inside)."""
    gh, gw = zbuf.shape
    cx = np.floor(positions[:, 0] / cell).astype(np.int64)
    cy = np.floor(positions[:, 1] / cell).astype(np.int64)
    inside = (cx >= 0) & (cx < gw) & (cy >= 0) & (cy < gh)
    nearest = np.full(positions.shape[0], np.inf, np.float32)
    nearest[inside] = zbuf[cy[inside], cx[inside]]
    with np.errstate(invalid="ignore"):
        return ~(nearest < np.asarray(point_depth, np.float32) * np.float32(1.0 - margin))


def job_tracks(
    drag_tracks: np.ndarray,
    flow: np.ndarray,
    frame_depth,
    num_frames: int,
    *,
    K: np.ndarray,
    c2w: np.ndarray,
    depth: np.ndarray | None,
    fallback_depth: float = 0.0,
    step: int = GRID_STEP,
    cell: int = OCCLUSION_CELL,
    margin: float = OCCLUSION_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """The job's Wan-Move tracks: drags followed by the camera grid, screen tracks resampled to
    `num_frames`: ((N, F', 2) float32 pixels, (N, F') bool).

    drag_tracks: (P, F, 2) job tracks (conditions.npz: frame-0 object space), converted here by
    track_space.screen_tracks with frame-0 `depth` (H, W) or None (the fallback plane at
    `fallback_depth`, as the unified flow), K (F, 3, 3), c2w (F, 4, 4). flow: (F, H, W, 2) the
    unified flow (screen motion of every frame-0 pixel). frame_depth: the unified flow's depth,
    (F, H, W) or a callable f -> (H, W) (planar depth in camera f, inf far, <= 0 behind camera f),
    one frame at a time so the whole video's depth need not be held. Visibility as the module
    docstring says (valid, then the z-buffer test with `cell` and `margin`)."""
    F, H, W = flow.shape[:3]
    get_depth = frame_depth if callable(frame_depth) else (lambda f: frame_depth[f])
    drag_tracks = np.asarray(drag_tracks, np.float32).reshape(-1, F, 2)
    drags, drag_vis, drag_z = screen_tracks_with_depth(
        drag_tracks, depth, K, c2w, fallback_depth=fallback_depth, height=H, width=W
    )
    ys, xs = _grid(H, W, step)
    start = np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float32)  # (N, 2)
    grid = start[:, None, :] + flow[:, ys, xs].transpose(1, 0, 2)  # (N, F, 2)
    grid_vis = _inside(grid, H, W)
    for f in range(1, F):
        d = np.asarray(get_depth(f))
        z = d[ys, xs]
        grid_vis[:, f] &= z > 0  # the unified flow's valid: in front of camera f (inside: above)
        zb = zbuffer(flow[f], d, cell)
        grid_vis[:, f] &= unoccluded(grid[:, f], z, zb, cell, margin)
        drag_vis[:, f] &= unoccluded(drags[:, f], drag_z[:, f], zb, cell, margin)
    tracks = np.concatenate([drags, grid.astype(np.float32)])
    visible = np.concatenate([drag_vis, grid_vis])
    return resample_tracks(tracks, visible, num_frames)


def track_condition(
    latent: torch.Tensor,
    tracks: torch.Tensor | np.ndarray,
    visible: torch.Tensor | np.ndarray,
    *,
    spatial: int = 8,
    temporal: int = 4,
) -> torch.Tensor:
    """A copy of `latent` (B, C, K, h, w) where, for every track n and latent frame k >= 1 with the
    track visible at pixel frame temporal * k (and at frame 0), the cell of the track's position holds
    frame 0's feature at the track's start cell (several tracks in one cell: one of them wins)."""
    B, C, K, h, w = latent.shape
    tracks = torch.as_tensor(np.asarray(tracks), dtype=torch.float32)
    visible = torch.as_tensor(np.asarray(visible), dtype=torch.bool)
    N, F = visible.shape
    if tracks.shape != (N, F, 2) or F < temporal * (K - 1) + 1:
        raise ValueError(
            f"tracks {tuple(tracks.shape)} / visible {tuple(visible.shape)} do not cover {K} latent frames "
            f"(need (N, F >= {temporal * (K - 1) + 1}, 2) and (N, F))"
        )
    out = latent.clone()
    cells = torch.floor(tracks / spatial).long()  # (N, F, 2) as (x, y) cells
    cx, cy = cells[..., 0], cells[..., 1]
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h) & visible
    start_ok = inside[:, 0]
    first = latent[:, :, 0]  # (B, C, h, w)
    for k in range(1, K):
        f = temporal * k
        ok = start_ok & inside[:, f]
        if not ok.any():
            continue
        src = first[:, :, cy[ok, 0], cx[ok, 0]]  # (B, C, n)
        out[:, :, k, cy[ok, f], cx[ok, f]] = src
    return out
