"""Flow for people and for disk: the Middlebury colour coding, resizing, and a compact npz format.

Flow follows flow.py: (F, H, W, 2) float32 pixels, channel 0 = x (right), channel 1 = y (down).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["color_wheel", "flow_to_color", "resize_flow", "save_flow", "load_flow", "FLOW_KEY"]

FLOW_KEY = "flow"
_FORMAT_VERSION = 1


def color_wheel() -> np.ndarray:
    """The Middlebury colour wheel (Baker et al., "A Database and Evaluation Methodology for Optical
    Flow"): 55 hues in six ramps, red -> yellow (15), yellow -> green (6), green -> cyan (4),
    cyan -> blue (11), blue -> magenta (13), magenta -> red (6). Returns (55, 3) float64 in [0, 255]."""
    R, Y, G, C, B, M = (255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)
    ramps = [(R, Y, 15), (Y, G, 6), (G, C, 4), (C, B, 11), (B, M, 13), (M, R, 6)]
    rows = []
    for a, b, n in ramps:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        # floor(255 * i / n) on the rising channel, 255 - floor(255 * i / n) on the falling one.
        a, b = np.array(a, np.float64), np.array(b, np.float64)
        step = np.floor(255 * t)
        rows.append(np.where(b > a, a + step, np.where(b < a, a - step, a)))
    return np.concatenate(rows, axis=0)


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code flow with the Middlebury wheel: hue = direction, saturation = magnitude.

    flow: (F, H, W, 2) or (H, W, 2) pixels. max_magnitude: the magnitude shown fully saturated; None
    uses the largest finite magnitude over ALL frames (one normalisation, so frames compare). Zero flow
    is white; flow to the right (+x) is red, down (+y) yellow, left cyan-blue, up blue-violet.
    Magnitudes above max_magnitude are darkened (x 0.75), non-finite flow is black.
    Returns (..., 3) uint8 RGB, the leading shape of ``flow``."""
    flow = np.asarray(flow)
    if flow.shape[-1] != 2 or flow.ndim not in (3, 4):
        raise ValueError(f"flow must have shape (F, H, W, 2) or (H, W, 2), got {flow.shape}")
    single = flow.ndim == 3
    if single:
        flow = flow[None]
    if max_magnitude is None:
        m = 0.0
        for f in range(flow.shape[0]):
            mag = np.hypot(flow[f, ..., 0].astype(np.float32), flow[f, ..., 1].astype(np.float32))
            finite = mag[np.isfinite(mag)]
            if finite.size:
                m = max(m, float(finite.max()))
        max_magnitude = m
    scale = 1.0 / max_magnitude if max_magnitude and max_magnitude > 0 else 0.0
    wheel = color_wheel() / 255.0
    n = wheel.shape[0]
    # Colour at wheel position fk = k + t (0 <= t < 1): wheel[k] + t * (wheel[k + 1] - wheel[k]), the last
    # entry blending back into the first. Per channel tables of base and slope, float32.
    base = np.ascontiguousarray(wheel.T, np.float32)  # (3, n)
    slope = np.ascontiguousarray((np.roll(wheel, -1, axis=0) - wheel).T, np.float32)
    out = np.empty(flow.shape[:-1] + (3,), np.uint8)
    col = np.empty(flow.shape[1:3], np.float32)
    tmp = np.empty(flow.shape[1:3], np.float32)
    for f in range(flow.shape[0]):  # one frame at a time keeps the float temporaries small
        u = flow[f, ..., 0].astype(np.float32)
        v = flow[f, ..., 1].astype(np.float32)
        bad = ~(np.isfinite(u) & np.isfinite(v))
        u[bad] = 0
        v[bad] = 0
        rad = np.hypot(u, v)
        rad *= np.float32(scale)
        fk = np.arctan2(-v, -u)  # angle in [-pi, pi], mapped to a wheel position in [0, n - 1]
        fk *= np.float32((n - 1) / (2 * np.pi))
        fk += np.float32((n - 1) / 2)
        k0 = fk.astype(np.int32)  # fk >= 0, so truncation is floor
        np.minimum(k0, n - 1, out=k0)
        t = fk
        t -= k0
        # Saturation: inside the unit magnitude 1 - rad * (1 - col) = (1 - rad) + rad * col, beyond
        # it 0.75 * col: out = A + B * col with A, B per pixel, shared by the three channels.
        inner = rad <= 1
        A = np.where(inner, 1 - rad, np.float32(0))
        B = np.where(inner, rad, np.float32(0.75))
        A[bad] = 0
        B[bad] = 0
        for c in range(3):  # per channel: numpy is slow when the innermost loop runs over 3 channels
            np.take(base[c], k0, out=col)
            np.take(slope[c], k0, out=tmp)
            tmp *= t
            col += tmp
            col *= B
            col += A
            np.clip(col, 0, 1, out=col)
            col *= 255
            np.floor(col, out=col)
            out[f, ..., c] = col
    return out[0] if single else out


def _resize_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear resampling along one axis (0 or 1 counted from the end: -2 rows, -1 columns) with
    pixel-centre alignment: src = (dst + 0.5) * n_in / n_out - 0.5, clamped at the borders (the
    "align_corners=False" rule of image libraries). a: float32 (..., rows, columns)."""
    n_in = a.shape[axis]
    if n_in == n_out:
        return a
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = x - i0
    if n_in * n_out <= 1 << 18:
        # Small maps (reduced-size flow): the resampling is a (n_in, n_out) matrix; matmul is fastest.
        M = np.zeros((n_in, n_out), np.float32)
        cols = np.arange(n_out)
        np.add.at(M, (i0, cols), 1 - t)
        np.add.at(M, (i1, cols), t)
        return a @ M if axis == -1 else np.matmul(M.T, a)
    shape = [1] * a.ndim
    shape[axis] = n_out
    t = t.astype(np.float32).reshape(shape)
    lo = np.take(a, i0, axis=axis)
    hi = np.take(a, i1, axis=axis)
    hi -= lo
    hi *= t
    lo += hi
    return lo


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize flow to ``height`` x ``width`` (bilinear, pixel-centre aligned) and rescale its values:
    x by width / W, y by height / H, so it stays in pixels of the new grid.

    flow: (F, H, W, 2) or (H, W, 2). Returns the same rank, float32. Downscaling by large factors is
    plain bilinear sampling (no anti-aliasing): smooth flow fields survive it, thin details may not."""
    flow = np.asarray(flow, np.float32)
    if flow.shape[-1] != 2 or flow.ndim not in (3, 4):
        raise ValueError(f"flow must have shape (F, H, W, 2) or (H, W, 2), got {flow.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"the new size must be positive, got {height}x{width}")
    H, W = flow.shape[-3], flow.shape[-2]
    out = np.empty(flow.shape[:-3] + (int(height), int(width), 2), np.float32)
    for c, scale in ((0, width / W), (1, height / H)):
        # One channel at a time so that the innermost loops run along image rows.
        ch = np.ascontiguousarray(flow[..., c])
        ch = _resize_axis(_resize_axis(ch, int(height), -2), int(width), -1)
        out[..., c] = ch * np.float32(scale)
    return out


def save_flow(path: str | os.PathLike, flow: np.ndarray, float16: bool = True, *, compress=False) -> None:
    """Write flow (F, H, W, 2) to an .npz (atomically): key ``flow``, float16 by default (values within
    1e-3 relative, e.g. 0.03 px at 50 px of motion, 0.25 px beyond 256 px), or float32.
    ``compress`` uses zlib (3-4x smaller, several seconds for a 49-frame 720x480 flow)."""
    from .job import atomic_write

    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (F, H, W, 2), got {flow.shape}")
    if float16:
        if np.nanmax(np.abs(flow), initial=0.0) > 65000:
            raise ValueError("flow values exceed the float16 range: save with float16=False")
        data = flow.astype(np.float16)
    else:
        data = flow.astype(np.float32)
    arrays = {FLOW_KEY: data, "format_version": np.array(_FORMAT_VERSION, np.int32)}
    saver = np.savez_compressed if compress else np.savez
    atomic_write(path, lambda fh: saver(fh, **arrays))


def load_flow(path: str | os.PathLike, shape: tuple | None = None) -> np.ndarray:
    """Read a flow file written by save_flow: returns (F, H, W, 2) float32.

    shape: optional expected shape (F, H, W) or (F, H, W, 2); None entries match anything. Raises
    ValueError when the file is not a flow file, its array has the wrong rank or shape, or it holds
    non-finite values. Never unpickles (allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or FLOW_KEY not in z.files:
                raise ValueError(f"{path} is not a flow file: it has no {FLOW_KEY!r} array")
            flow = z[FLOW_KEY]
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz flow file ({exc})") from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise ValueError(f"{path} is not an .npz of plain arrays (pickles are never loaded)") from exc
        raise
    if flow.dtype.kind != "f":
        raise ValueError(f"{path}: flow must be float16 or float32, got {flow.dtype}")
    if flow.ndim != 4 or flow.shape[-1] != 2:
        raise ValueError(f"{path}: flow must have shape (F, H, W, 2), got {flow.shape}")
    if shape is not None:
        want = tuple(shape) + ((2,) if len(shape) == 3 else ())
        if len(want) != 4 or any(w is not None and w != s for w, s in zip(want, flow.shape)):
            raise ValueError(f"{path}: flow has shape {flow.shape}, expected {tuple(shape)}")
    flow = flow.astype(np.float32)
    if not np.isfinite(flow).all():
        raise ValueError(f"{path}: flow holds NaN or infinite values")
    return flow
