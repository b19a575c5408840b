"""Plücker embedding of a camera track: one 6-channel ray map per frame (CameraCtrl's definition).

Convention (CameraCtrl, ``ray_condition``):
    * Rays go through pixel CENTRES (i + 0.5, j + 0.5) of a ``width`` x ``height`` image whose K is in
      pixels of that image (origin at the top-left corner).
    * Camera-frame direction ``d_cam = K^-1 [u, v, 1]^T`` = ((u - cx) / fx, (v - cy) / fy, 1) for a K
      without skew, normalised to unit length BEFORE rotation; world direction ``d = R_c2w d_cam``
      (still unit); origin ``o = t_c2w`` (the camera centre).
    * Channels are ``[o x d, d]``: moment (3) then direction (3), OpenCV axes of the world (which is
      frame 0's camera frame when ``relative`` is true, the default).
    * Output is channels-first (F, 6, H, W).

For an encoder that works at a reduced size, pass that size and K rescaled with
``camera.rescale_intrinsics(K, (W, H), (w, h))``: the result is the embedding of the same cameras on
the coarser pixel grid (rays through the coarse pixel centres).
"""

from __future__ import annotations

import numpy as np

from .camera import CameraError, _check_cameras, relative_to_first

__all__ = ["plucker_embedding", "ray_directions"]


def ray_directions(K: np.ndarray, height: int, width: int, dtype=np.float32) -> np.ndarray:
    """Unit camera-frame ray directions through pixel centres: (3, H*W) ``dtype``, row-major pixels.

    K: (3, 3) pixels of the ``width`` x ``height`` image."""
    K = np.asarray(K, np.float64)
    Kinv = np.linalg.inv(K)
    # K^-1 [u, v, 1]: each component is affine in u and v, built by broadcasting a row and a column.
    u = np.arange(width, dtype=np.float64) + 0.5
    v = np.arange(height, dtype=np.float64) + 0.5
    d = np.empty((3, height, width), dtype)
    for c in range(3):
        np.add((Kinv[c, 0] * u + Kinv[c, 2])[None, :], (Kinv[c, 1] * v)[:, None], out=d[c], casting="unsafe")
    d = d.reshape(3, height * width)
    norm = np.sqrt(np.einsum("ij,ij->j", d, d))
    d /= norm
    return d


def plucker_embedding(
    c2w: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    *,
    relative: bool = True,
    dtype=np.float32,
) -> np.ndarray:
    """Per-frame Plücker ray maps of a camera track.

    c2w: (F, 4, 4) OpenCV camera-to-world (world units). K: (F, 3, 3) or (3, 3) pixels of the
    ``width`` x ``height`` grid the embedding is computed on. relative: make poses relative to frame 0
    first (``w2c[0] @ c2w[i]``; frame 0 becomes the identity, so its moments are zero). dtype: float32
    (default) or float16 for the output (computation is float32 either way).

    Returns (F, 6, H, W) ``dtype``: channels [o x d (3), d (3)] as in the module docstring.
    Memory: the output plus O(H*W) per frame (49x6x480x720 float32 is 406 MB; float16 halves it)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise CameraError(f"dtype must be float32 or float16, got {dtype}")
    c2w, K = _check_cameras(c2w, K)
    F = c2w.shape[0]
    if int(height) <= 0 or int(width) <= 0:
        raise CameraError(f"height and width must be positive, got {height}x{width}")
    if relative:
        c2w = relative_to_first(c2w)
    HW = height * width
    out = np.empty((F, 6, height, width), dtype)
    tmp = None if dtype == np.float32 else np.empty((6, HW), np.float32)
    d_cam = None
    for f in range(F):
        if d_cam is None or not np.array_equal(K[f], K[f - 1]):
            d_cam = ray_directions(K[f], height, width)
        R = c2w[f, :3, :3]
        o = c2w[f, :3, 3]
        # [o x d; d] = [[o]_x R; R] @ d_cam: one (6, 3) @ (3, H*W) product per frame.
        ox = np.array([[0.0, -o[2], o[1]], [o[2], 0.0, -o[0]], [-o[1], o[0], 0.0]])
        M = np.concatenate([ox @ R, R], axis=0).astype(np.float32)
        if tmp is None:
            np.matmul(M, d_cam, out=out[f].reshape(6, HW))
        else:
            np.matmul(M, d_cam, out=tmp)
            out[f].reshape(6, HW)[...] = tmp
    return out
