"""outputs.color_flow compiled with numba: one pass over the pixels, the same float32 arithmetic
(scale, round half to even, clip, table index), so the same colours bit for bit. Imported only
where numba is installed (outputs.color_flow, through backend.compiled); `nogil`, cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

f32 = np.float32


@numba.njit(cache=True, nogil=True, error_model="numpy")
def color_flow(flow, lut, scale, radius, out):
    """flow (H, W, 2) float32 -> out (H, W, 3) uint8: lut[(rint(v * scale) + R) * n + rint(u *
    scale) + R] with both clipped to [-R, R] (R = radius, n = 2R + 1); lut (n * n, 4) uint8 RGBA;
    black where u * scale or v * scale is not finite."""
    H, W = out.shape[0], out.shape[1]
    n = 2 * radius + 1
    R = f32(radius)
    for i in range(H):
        for j in range(W):
            u = flow[i, j, 0] * scale
            v = flow[i, j, 1] * scale
            if not (np.isfinite(u) and np.isfinite(v)):
                out[i, j, 0] = 0
                out[i, j, 1] = 0
                out[i, j, 2] = 0
                continue
            u = min(max(np.rint(u), -R), R)
            v = min(max(np.rint(v), -R), R)
            k = (int(v) + radius) * n + (int(u) + radius)
            out[i, j, 0] = lut[k, 0]
            out[i, j, 1] = lut[k, 1]
            out[i, j, 2] = lut[k, 2]
