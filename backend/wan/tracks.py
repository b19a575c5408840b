"""Wan-Move track conditioning: point tracks copy frame 0's latent features along each track.

Wan-Move (Ruihang/Wan-Move-14B-480P, Apache-2.0) is a full fine-tune of Wan2.1-I2V-14B-480P with the
stock architecture; the motion enters through the image-conditioning latent only: for every track
visible at latent frame k, the latent feature of frame 0 at the track's start cell is written into
latent frame k at the track's cell there. The conditional pass sees this latent; the unconditional
pass (classifier-free guidance) sees the original one.

Tracks come from the job in two ways (`job_tracks`): the drags directly, and the camera (plus
everything the unified flow moves) as a grid of points whose positions are frame 0's pixel grid
carried by the preview's unified flow (depth-lifted and reprojected by the keyed camera in the core),
visible where the flow is valid.

Conventions:
    tracks (N, F, 2) float pixels (x right, y down, pixel centres at i + 0.5 as in the core, so a
        point at x lies in pixel floor(x)); visible (N, F) bool; F = the video's frames.
    latent condition (B, C, K, h, w) (Wan's layout); latent frame k stands for pixel frame
        temporal x k; a point at pixel x lies in latent cell floor(x / spatial).
"""

from __future__ import annotations

import numpy as np
import torch

# Grid spacing of camera tracks in pixels (one point per 16 x 16 block: two latent cells of Wan 2.1).
GRID_STEP = 16


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


def grid_tracks(flow: np.ndarray, valid: np.ndarray, step: int = GRID_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Camera (+ scene) tracks: a grid of frame-0 pixel centres every `step` pixels carried by the
    unified flow (F, H, W, 2); visible (F, H, W) bool where the flow is valid."""
    F, H, W = flow.shape[:3]
    ys, xs = np.mgrid[step // 2 : H : step, step // 2 : W : step]
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    start = np.stack([xs + 0.5, ys + 0.5], -1).astype(np.float32)  # (N, 2)
    tracks = start[:, None, :] + flow[:, ys, xs].transpose(1, 0, 2)  # (N, F, 2)
    vis = valid[:, ys, xs].T.copy()
    vis &= (tracks[..., 0] >= 0) & (tracks[..., 0] < W) & (tracks[..., 1] >= 0) & (tracks[..., 1] < H)
    return tracks.astype(np.float32), vis


def job_tracks(
    drag_tracks: np.ndarray,
    drag_visible: np.ndarray,
    flow: np.ndarray,
    valid: np.ndarray,
    num_frames: int,
    step: int = GRID_STEP,
) -> tuple[np.ndarray, np.ndarray]:
    """Drags followed by the camera grid, resampled to `num_frames`: ((N, F', 2), (N, F'))."""
    grid, grid_vis = grid_tracks(flow, valid, step)
    tracks = np.concatenate([drag_tracks.astype(np.float32).reshape(-1, flow.shape[0], 2), grid])
    visible = np.concatenate([drag_visible.astype(bool).reshape(-1, flow.shape[0]), grid_vis])
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
