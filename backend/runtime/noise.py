"""Flow-warped initial noise at pixel resolution (Go-with-the-Flow style), for every model family.

Motion smaller than one latent cell (8 or 16 pixels) still moves the noise, because the noise is
warped at pixel resolution and only then pooled back to the latent grid:

1. Up-sample (conditional): latent frame 0's noise v (one value per s x s cell) becomes a pixel
   field z = v / s + (e - mean_cell(e)), e i.i.d. N(0, 1) per pixel. Every pixel is N(0, 1)
   (variance 1/s^2 + (1 - 1/s^2)) and the cell sum of z over s is exactly v again.
2. Warp: every pixel moves along the flow to its nearest target pixel; n values landing on one
   pixel are summed and divided by sqrt(n); pixels nothing reaches take fresh N(0, 1) noise.
3. Pool with the variance correction: a latent cell gets the sum of its s^2 pixels divided by s
   (the sum of s^2 unit Gaussians has variance s^2), so zero flow returns v exactly.
4. Degradation mix: (gamma * eps + (1 - gamma) * q) / sqrt(gamma^2 + (1 - gamma)^2) with eps the
   frame's own fresh noise and q the warped noise; gamma = 0 keeps the warped noise (default).

Conventions:
    noise0: (B, C, h, w), latent frame 0's noise. fill: (B, K, C, h, w) independent noise of each
        latent frame (eps above; it also seeds the pixel noise of step 1-2 deterministically).
    flow: (F, H, W, 2) float pixels, forward flow from frame 0 to frame f (x right, y down) with
        H = s * h, W = s * w; latent frame k stands for pixel frame min(temporal * k, F - 1).
    Returns (B, K, C, h, w) float, each frame an i.i.d. unit Gaussian (up to pooling correlations).
"""

from __future__ import annotations

import math

import torch

__all__ = ["warp_noise_pixels"]


def _splat(values: torch.Tensor, flow: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel forward splat of values (N, H, W) along flow (H, W, 2), sum / sqrt(n); holes
    take `fresh` (N, H, W)."""
    N, H, W = values.shape
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    tx = torch.round(xs + flow[..., 0]).long()
    ty = torch.round(ys + flow[..., 1]).long()
    inside = ((tx >= 0) & (tx < W) & (ty >= 0) & (ty < H)).reshape(-1)
    target = (ty * W + tx).reshape(-1)[inside]
    sums = torch.zeros((N, H * W), dtype=torch.float32)
    sums.index_add_(1, target, values.reshape(N, H * W)[:, inside])
    counts = torch.bincount(target, minlength=H * W).to(torch.float32)
    out = torch.where(counts > 0, sums / counts.clamp(min=1.0).sqrt(), fresh.reshape(N, H * W))
    return out.reshape(N, H, W)


def warp_noise_pixels(
    noise0: torch.Tensor,
    flow: torch.Tensor,
    fill: torch.Tensor,
    *,
    temporal: int = 4,
    degradation: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Steps 1-4 of the module docstring. `seed` draws the per-pixel noise of steps 1 and 2 (CPU
    generator), so the result is deterministic for given inputs."""
    B, C, h, w = noise0.shape
    K = fill.shape[1]
    flow = torch.as_tensor(flow, dtype=torch.float32).cpu()
    F, H, W = flow.shape[:3]
    if fill.shape != (B, K, C, h, w) or flow.shape[-1] != 2 or H % h or W % w or H // h != W // w:
        raise ValueError(
            f"warp_noise_pixels: noise0 {tuple(noise0.shape)}, fill {tuple(fill.shape)} and flow "
            f"{tuple(flow.shape)} do not match: expected fill ({B}, K, {C}, {h}, {w}) and flow (F, s*{h}, "
            f"s*{w}, 2) with one integer cell size s"
        )
    if not 0.0 <= degradation <= 1.0:
        raise ValueError(f"degradation must be in [0, 1], got {degradation}")
    s = H // h
    gen = torch.Generator().manual_seed(int(seed))
    v = noise0.float().cpu().reshape(B * C, h, w)
    e = torch.randn((B * C, H, W), generator=gen)
    cell_mean = torch.nn.functional.avg_pool2d(e.unsqueeze(1), s).squeeze(1)
    up = lambda x: x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)  # noqa: E731
    z = up(v / s) + e - up(cell_mean)  # (B*C, H, W), cell sums / s == v
    out = torch.empty((B, K, C, h, w), dtype=torch.float32)
    for k in range(K):
        f = min(temporal * k, F - 1)
        fresh = torch.randn((B * C, H, W), generator=gen)
        moved = z if not torch.any(flow[f]) else _splat(z, flow[f], fresh)
        q = torch.nn.functional.avg_pool2d(moved.unsqueeze(1), s).squeeze(1) * s  # sum / s
        q = q.reshape(B, C, h, w)
        if degradation > 0.0:
            g = degradation
            q = (g * fill[:, k].float().cpu() + (1 - g) * q) / math.sqrt(g * g + (1 - g) ** 2)
        out[:, k] = q
    return out.to(device=noise0.device, dtype=noise0.dtype)
