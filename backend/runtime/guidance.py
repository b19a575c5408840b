"""How a preview video steers a stock image-to-video model, shared by every model family.

Methods (job field `guidance`):
- "ttm", Time-to-Move (Singer et al., ICLR 2026; training-free dual-clock denoising): the whole
  latent video starts from the preview noised to step `tweak_index` of the full schedule; inside
  the mask (latent cells where the preview is trustworthy) the preview noised to the current
  noise level is written back after every step until step `tstrong_index`; outside it the model is
  free from `tweak_index` on. The noise used for noising is the run's initial noise (one draw).
  Defaults (the authors', of 50 steps): Wan 3 / 7 (their camera-control setting is 2 / 5),
  CogVideoX 4 / 9; indices are scaled to other step counts. 0 <= tweak <= tstrong <= steps.
- "sdedit": the preview noised to `strength` of the schedule, the model denoises the rest.
- "none": plain image-to-video from pure noise (bit-identical to the stock diffusers pipeline).

Conventions:
    preview flow (F, H, W, 2) float pixels, preview depth (F, H, W) (<= 0 behind the camera).
    pixel mask (F, H, W) bool, True = the preview's pixel was carried there from frame 0.
    latent mask (K, h, w) float {0, 1}; latent frame k stands for pixel frames 4k-3 .. 4k (frame 0
    for k = 0), a cell is inside only when all its pixels in all those frames are (conservative).
"""

from __future__ import annotations

import numpy as np

# The Time-to-Move defaults and index rule live in the core: the panel shows and checks them too.
from blender_animate.model_limits import ttm_indices  # noqa: F401

GUIDANCE_METHODS = ("ttm", "sdedit", "none", "tracks")


def coverage_mask(flow: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
    """Pixels of each frame that some pixel of frame 0 lands on (nearest pixel, in front of the
    camera): where the forward-splatted preview holds real image content, not hole filling.
    flow (F, H, W, 2), depth (F, H, W) or None -> (F, H, W) bool; frame 0 is all True."""
    F, H, W = flow.shape[:3]
    ys, xs = np.mgrid[0:H, 0:W]
    out = np.zeros((F, H, W), bool)
    out[0] = True
    for f in range(1, F):
        tx = np.rint(xs + flow[f, ..., 0]).astype(np.int64)
        ty = np.rint(ys + flow[f, ..., 1]).astype(np.int64)
        ok = (tx >= 0) & (tx < W) & (ty >= 0) & (ty < H) & np.isfinite(flow[f]).all(-1)
        if depth is not None:
            ok &= depth[f] > 0
        hit = np.zeros(H * W, bool)
        hit[(ty * W + tx)[ok]] = True
        out[f] = hit.reshape(H, W)
    return out


def latent_mask(mask: np.ndarray, latent_frames: int, h: int, w: int, temporal: int = 4) -> np.ndarray:
    """Pixel mask (F, H, W) -> latent mask (K, h, w) float32 as in the module docstring."""
    F, H, W = mask.shape
    if H % h or W % w:
        raise ValueError(f"mask {H}x{W} is not a whole number of {h}x{w} latent cells")
    sy, sx = H // h, W // w
    out = np.zeros((latent_frames, h, w), np.float32)
    for k in range(latent_frames):
        frames = mask[max(0, temporal * (k - 1) + 1) : min(temporal * k, F - 1) + 1] if k else mask[:1]
        cells = frames.all(0).reshape(h, sy, w, sx).all(axis=(1, 3))
        out[k] = cells
    return out
