"""The per-frame work of the output files compiled with numba: flow.mp4's colours
(outputs.color_flow: the numpy path's bits, from float32 or float16 flow), flow.npz's range
(outputs.flow_square_max) and the RGB -> YUV 4:2:0 conversion that x264 takes (outputs.to_yuv420).
Imported only where numba is installed (through backend.compiled); `nogil`, so that the frame
threads run them side by side; cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

f32 = np.float32


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _colour(u, v, lut, R, radius, n, dst, k):
    """Pixel k of dst from flow (u, v) already times the scale (see color_flow)."""
    if not (np.isfinite(u) and np.isfinite(v)):
        dst[3 * k] = 0
        dst[3 * k + 1] = 0
        dst[3 * k + 2] = 0
        return
    u = min(max(np.rint(u), -R), R)
    v = min(max(np.rint(v), -R), R)
    m = (int(v) + radius) * n + (int(u) + radius)
    dst[3 * k] = lut[m, 0]
    dst[3 * k + 1] = lut[m, 1]
    dst[3 * k + 2] = lut[m, 2]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def color_flow(flow, lut, scale, radius, out):
    """flow (H, W, 2) float32 -> out (H, W, 3) uint8, both C order: lut[(rint(v * scale) + R) * n + rint(u *
    scale) + R] with both clipped to [-R, R] (R = radius, n = 2R + 1); lut (n * n, 4) uint8 RGBA;
    black where u * scale or v * scale is not finite."""
    n = 2 * radius + 1
    R = f32(radius)
    src, dst = flow.ravel(), out.ravel()  # flat: indices numba knows are not negative (faster)
    for k in range(out.shape[0] * out.shape[1]):
        _colour(src[2 * k] * scale, src[2 * k + 1] * scale, lut, R, radius, n, dst, k)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def color_flow_half(bits, half, lut, scale, radius, out):
    """color_flow of float16 flow: bits (H, W, 2) uint16, the float16 values' bits (C order);
    half (65536,) float32, every float16 value by its bits (exact: the same colours as casting
    first, without the float32 copy)."""
    n = 2 * radius + 1
    R = f32(radius)
    src, dst = bits.ravel(), out.ravel()
    for k in range(out.shape[0] * out.shape[1]):
        _colour(half[src[2 * k]] * scale, half[src[2 * k + 1]] * scale, lut, R, radius, n, dst, k)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def flow_square_max(flow):
    """flow (H, W, 2) float32 -> (the largest finite u * u + v * v in float32, whether every value
    is finite); the sums are numpy's einsum's (one rounding per product and one per sum)."""
    top = f32(0.0)
    finite = True
    H, W = flow.shape[0], flow.shape[1]
    for i in range(H):
        for j in range(W):
            u = flow[i, j, 0]
            v = flow[i, j, 1]
            sq = u * u + v * v
            if np.isfinite(sq):
                top = max(top, sq)
            else:
                finite = False
    return top, finite


# BT.601, limited range ("tv"), what swscale assumes for rgb24 -> yuv420p: per 8-bit RGB value,
# in 1/2**15 steps (integer arithmetic; the coefficients' rounding moves a result by at most 0.02
# of a level).
_Y = (8414, 16519, 3208)  # round(2**15 * (65.481, 128.553, 24.966) / 255)
_U = (-4857, -9535, 14392)  # (-37.797, -74.203, 112.0), of a 2x2 block's sum: >> 2 more
_V = (14392, -12052, -2341)  # (112.0, -93.786, -18.214)
_Y0 = (16 << 15) + (1 << 14)  # the offset, and a half for rounding
_C0 = (128 << 17) + (1 << 16)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def rgb_to_yuv420(rgb, out):
    """rgb (H, W, 3) uint8 C order, H and W even -> out (H * 3 // 2, W) uint8: the Y plane (H, W),
    then U and V (H/2, W/2 each, row after row): Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255,
    U and V likewise of each 2x2 block's mean, rounded to nearest."""
    H, W = rgb.shape[0], rgb.shape[1]
    w = W // 2
    src, flat = rgb.ravel(), out.ravel()
    # Flat loops and row slices: indices numba knows are not negative, so LLVM vectorises.
    for k in range(H * W):
        r, g, b = np.int32(src[3 * k]), np.int32(src[3 * k + 1]), np.int32(src[3 * k + 2])
        flat[k] = (_Y[0] * r + _Y[1] * g + _Y[2] * b + _Y0) >> 15
    u_plane = flat[H * W : H * W + (H // 2) * w]
    v_plane = flat[H * W + (H // 2) * w :]
    for bi in range(H // 2):
        top = src[6 * bi * W : 6 * bi * W + 3 * W]
        bottom = src[6 * bi * W + 3 * W : 6 * bi * W + 6 * W]
        u_row, v_row = u_plane[bi * w : bi * w + w], v_plane[bi * w : bi * w + w]
        for bj in range(w):
            r = np.int32(top[6 * bj]) + np.int32(top[6 * bj + 3])
            r += np.int32(bottom[6 * bj]) + np.int32(bottom[6 * bj + 3])
            g = np.int32(top[6 * bj + 1]) + np.int32(top[6 * bj + 4])
            g += np.int32(bottom[6 * bj + 1]) + np.int32(bottom[6 * bj + 4])
            b = np.int32(top[6 * bj + 2]) + np.int32(top[6 * bj + 5])
            b += np.int32(bottom[6 * bj + 2]) + np.int32(bottom[6 * bj + 5])
            u_row[bj] = (_U[0] * r + _U[1] * g + _U[2] * b + _C0) >> 17
            v_row[bj] = (_V[0] * r + _V[1] * g + _V[2] * b + _C0) >> 17
