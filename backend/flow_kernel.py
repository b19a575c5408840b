"""Stage 1's projection of frame 0's pixels into frame f (blender_animate.flow._project_frames)
compiled with numba: the two halves of its per-frame loop in one pass over the pixels each,
instead of about twenty numpy passes, with the same float32 operations in the same order, so the
same bits. Imported only where numba is installed (through backend.compiled); `nogil`, so the
frame threads project side by side (the numpy passes are bound by memory traffic); cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

f32 = np.float32


@numba.njit(cache=True, nogil=True, error_model="numpy")
def points(invd, rows, cols, b, has_b, q):
    """q[c, i, j] = rows[c, j] + cols[c, i] (+ invd[i, j] * b[c] where has_b[c]): the homogeneous
    image points H_f [u, v, 1] + b_f / d of frame 0's pixels. invd (H, W), rows (3, W), cols (3, H),
    b (3,) float32, has_b (3,) bool, q (3, H, W) float32."""
    H, W = invd.shape
    for c in range(3):
        for i in range(H):
            out_row = q[c, i]
            row, col = rows[c], cols[c, i]
            if has_b[c]:
                d_row, bc = invd[i], b[c]
                for j in range(W):
                    out_row[j] = (row[j] + col) + d_row[j] * bc
            else:
                for j in range(W):
                    out_row[j] = row[j] + col


@numba.njit(cache=True, nogil=True, error_model="numpy")
def finish(q, invd, u, v, flow, depth, valid):
    """From q (3, H, W): flow (H, W, 2) = (q_x / q_z - u, q_y / q_z - v), depth (H, W) = q_z / invd,
    valid (H, W) = in view (0 <= x < W, 0 <= y < H) and in front (q_z > 1e-6); flow and depth 0
    behind the camera. u (W,), v (H,) the pixel centres, float32."""
    H, W = invd.shape
    eps = f32(1e-6)
    fw, fh = f32(W), f32(H)
    for i in range(H):
        qx, qy, qz, d_row = q[0, i], q[1, i], q[2, i], invd[i]
        flow_row, depth_row, valid_row = flow[i], depth[i], valid[i]
        vi = v[i]
        for j in range(W):
            z = qz[j]
            if z > eps:
                x = qx[j] / z
                y = qy[j] / z
                flow_row[j, 0] = x - u[j]
                flow_row[j, 1] = y - vi
                depth_row[j] = z / d_row[j]
                valid_row[j] = x >= 0 and x < fw and y >= 0 and y < fh
            else:  # behind the camera
                flow_row[j, 0] = 0
                flow_row[j, 1] = 0
                depth_row[j] = 0
                valid_row[j] = False
