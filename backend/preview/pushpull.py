"""The push-pull pyramid fill, dense (`push_pull`) and at a set of pixels (`push_pull_sparse`,
`push_pull_flat`: only the pyramid cells those pixels depend on, down to where the weights
reach 1, the same float32 arithmetic as the dense one, bitwise). backend/preview/fill.py's
fillers use it.

Two implementations of the push-pull (and of the uint8 conversion), the same bits: where numba
is installed, fill_kernel compiles them (`compiled_kernel()`: backend.compiled.load, once, on a
tiny problem; a kernel that does not build is a warning on stderr and the numpy path; nogil, so
the frame threads run side by side; `compiled=` of push_pull_sparse picks); else numpy
(`push_pull_flat`: per-level index arrays over the needed cells). Blender's own Python has no
numba: there the numpy path runs, ~2.5x slower over the whole fill (1920 x 1080).
"""

from __future__ import annotations

import numpy as np


def flat_rows(image: np.ndarray) -> np.ndarray:
    """image (H, W, C) as (H * W, C) rows: a view where the layout allows, else a copy."""
    return image.reshape(-1, image.shape[-1])


def push_pull(
    image: np.ndarray,
    weight: np.ndarray,
    *,
    max_levels: int = 16,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """Pyramid fill. image (H, W, C) float32, weight (H, W) float32 in [0, 1] (0 = unknown).
    Returns (H, W, C) float32 where weight-1 pixels keep their value and the rest blend in the
    coarser levels: out = w * image + (1 - w) * upsample(coarser). at: (H, W) bool, or None:
    then only out[at] is returned, (n, C), and the full-size upsampling is skipped (the cost of
    the finest level is then that of the pull and of the n pixels)."""
    w = np.clip(weight, 0.0, 1.0).astype(np.float32)
    done = w.min() >= 1.0
    if done or max_levels <= 0 or min(image.shape[:2]) <= 1:
        out = image.copy() if w.max() > 0 else np.zeros_like(image)
        return out if at is None else out[at]
    # Pull: weighted 2x2 means (odd sizes padded with zero weight).
    H, W = w.shape
    wsum = _sum2x2(_pad_even(w))
    csum = _sum2x2(_pad_even(image * w[..., None]))
    coarse = csum / np.maximum(wsum, 1e-12)[..., None]
    coarse = push_pull(coarse, np.minimum(wsum, 1.0), max_levels=max_levels - 1)
    if at is not None:
        ys, xs = np.nonzero(at)
        wa = w[ys, xs][:, None]
        return wa * image[ys, xs] + (1.0 - wa) * _upsample_at(coarse, ys, xs)
    up = _upsample2(coarse)[:H, :W]
    return w[..., None] * image + (1.0 - w[..., None]) * up


def _upsample_at(a: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """_upsample2(a)[ys, xs] for (n,) pixel indices of the 2x finer grid, computed at those
    pixels only: (n, C). Same pixel-centre alignment and clamped edges."""
    h, w = a.shape[:2]

    def taps(i, n):
        v = (i.astype(np.float32) + 0.5) * 0.5 - 0.5
        i0 = np.floor(v)
        f = (v - i0)[:, None]
        i0 = i0.astype(np.int64)
        return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), f

    y0, y1, fy = taps(ys, h)
    x0, x1, fx = taps(xs, w)
    top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
    bottom = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(a.dtype, copy=False)


def _pad_even(a: np.ndarray) -> np.ndarray:
    ph, pw = a.shape[0] % 2, a.shape[1] % 2
    if not (ph or pw):
        return a
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad)


def _sum2x2(a: np.ndarray) -> np.ndarray:
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def _upsample2(a: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling with pixel-centre alignment (edges clamped): (h, w, ...) -> (2h, 2w, ...)."""

    def along(x: np.ndarray, axis: int) -> np.ndarray:
        n = x.shape[axis]
        prev = np.take(x, np.r_[0, np.arange(n - 1)], axis=axis)
        nxt = np.take(x, np.r_[np.arange(1, n), n - 1], axis=axis)
        even = 0.75 * x + 0.25 * prev
        odd = 0.75 * x + 0.25 * nxt
        out = np.stack([even, odd], axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = 2 * n
        return out.reshape(shape)

    return along(along(a, 0), 1)


def _pull_weights(weight: np.ndarray, max_levels: int) -> list[np.ndarray]:
    """push_pull's weight pyramid, whole (one channel, cheap): [w_0 (H, W) clipped, w_1, ...]
    down to the level where push_pull stops (max_levels, or a side of one cell); w_l = min(1,
    sum2x2(pad(w_{l-1}))) with push_pull's arithmetic."""
    w = weight.astype(np.float32, copy=False)
    if not (w.min() >= 0.0 and w.max() <= 1.0):  # (clipping the float32 values is the same)
        w = np.clip(w, 0.0, 1.0).astype(np.float32)
    out = [w]
    while len(out) <= max_levels and min(w.shape) > 1 and w.min() < 1.0:
        w = np.minimum(_sum2x2(_pad_even(w)), np.float32(1.0))
        out.append(w)
    return out


def _taps2(i: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """_upsample2's two taps along one axis for fine indices i: the coarse cell i // 2 (weight
    0.75) and its neighbour on i's side (0.25), clamped to [0, n - 1]."""
    k = i // 2
    return k, np.clip(np.where(i % 2 == 0, k - 1, k + 1), 0, n - 1)


def _taps_at(i: np.ndarray, n: int):
    """_upsample_at's taps along one axis: (i0, i1, fraction (m, 1) float32)."""
    v = (i.astype(np.float32) + 0.5) * 0.5 - 0.5
    i0 = np.floor(v)
    f = (v - i0)[:, None]
    i0 = i0.astype(np.int64)
    return np.clip(i0, 0, n - 1), np.clip(i0 + 1, 0, n - 1), f


def _mark(n: int, idx: np.ndarray) -> np.ndarray:
    """The sorted distinct values of idx (flat indices below n), by a mark array."""
    m = np.zeros(n, bool)
    m[idx] = True
    return np.flatnonzero(m)


def push_pull_sparse(
    image: np.ndarray,
    weight: np.ndarray,
    at: np.ndarray,
    *,
    max_levels: int = 16,
    blend: str = "at",
    compiled: bool | None = None,
) -> np.ndarray:
    """push_pull(image, weight, at=at) (blend "at") or push_pull(image, weight)[at] (blend
    "full"), bitwise (the same float32 operations in the same order), computed only at the
    pyramid cells those pixels depend on: a cell of weight 1 needs nothing coarser, so below the
    whole weight pyramid (one channel, cheap) the cost follows the holes, not the frame.
    image (H, W, C) float32, weight (H, W) float32, at (H, W) bool. Returns (n, C) float32 in
    np.nonzero(at) order. compiled: the numba kernel (fill_kernel) when True, the numpy path
    when False, None: the kernel where numba is installed; the two give the same bits."""
    flat = np.flatnonzero(at)
    rows = flat_rows(image)
    return push_pull_flat(rows, weight, flat, max_levels=max_levels, blend=blend, compiled=compiled)


def compiled_kernel():
    """backend.preview.fill_kernel, ready (backend.compiled.load: built, or loaded from numba's
    cache, on a tiny push-pull), or None: numba is not installed or the kernel does not build."""
    from ..compiled import load

    return load("backend.preview.fill_kernel", _smoke_test)


def _smoke_test(fill_kernel) -> None:
    """Tiny push-pulls (uint8 and float32 rows, both blends) and conversions through the kernel:
    compiles (or loads) what the fill uses."""
    w = np.array([[1.0, 0.0, 1.0], [0.5, 1.0, 0.0]], np.float32)
    for rows in (np.zeros((6, 3), np.uint8), np.zeros((6, 3), np.float32)):
        for blend in ("at", "full"):
            _push_pull_compiled(fill_kernel, rows, w, np.array([1, 5]), None, 16, blend)
    for dtype in (np.float32, np.float64):
        fill_kernel.to_u8(np.zeros(2, dtype), np.zeros(2, np.uint8))


def _push_pull_compiled(kernel, rows, weight, at, patch, max_levels: int, blend: str) -> np.ndarray:
    """_push_pull_flat through fill_kernel.push_pull_at (arguments as there): (n, C) float32."""
    if rows.dtype not in (np.uint8, np.float32, np.float64):
        rows = rows.astype(np.float32)
    rows = np.ascontiguousarray(rows)
    w = np.ascontiguousarray(weight, np.float32)
    at = np.ascontiguousarray(at, np.int64)
    if patch is None:
        idx, pv = np.zeros(0, np.int64), np.zeros((0, rows.shape[1]), np.float32)
    else:
        idx = np.ascontiguousarray(patch[0], np.int64)
        pv = np.ascontiguousarray(patch[1], np.float32).reshape(idx.size, rows.shape[1])
    out = np.empty((at.size, rows.shape[1]), np.float32)
    kernel.push_pull_at(rows, w, at, idx, pv, max_levels, blend == "full", out)
    return out


def _gather(rows: np.ndarray, k: np.ndarray, patch) -> np.ndarray:
    """rows[k] as float32 (m, C), with patch = (sorted flat indices, their (p, C) values) or
    None replacing the rows it names."""
    v = rows[k].astype(np.float32, copy=False)
    if patch is not None and patch[0].size:
        idx, pv = patch
        j = np.minimum(np.searchsorted(idx, k), idx.size - 1)
        hit = idx[j] == k
        if hit.any():
            v[hit] = pv[j[hit]]
    return v


def push_pull_flat(
    rows: np.ndarray,
    weight: np.ndarray,
    at: np.ndarray,
    *,
    patch=None,
    max_levels: int = 16,
    blend: str = "at",
    compiled: bool | None = None,
) -> np.ndarray:
    """push_pull_sparse on flat indices: rows (H * W, C) the image (any real dtype, read as
    float32), weight (H, W) float32, at (n,) sorted flat indices, patch (sorted flat indices,
    (p, C) float32 values) or None: image pixels replaced (e.g. filled cracks). Returns (n, C).
    compiled: as push_pull_sparse's (the kernel computes the same bits; fill_kernel's docstring).

    Levels: N_l, the cells push_pull's output at the pixels depends on (the upsampling taps of
    the cells of N_{l-1} whose weight is below 1); P_l, those whose pulled value is needed (N_l
    and the children of P_{l+1}). Values are pulled bottom-up over P_l, then pushed top-down
    over N_l."""
    C = rows.shape[1]
    H, W = weight.shape
    if at.size == 0:
        return np.zeros((0, C), np.float32)
    kernel = None if compiled is False else compiled_kernel()
    if compiled and kernel is None:
        raise RuntimeError("the compiled fill needs numba: pip install numba")
    if kernel is not None:
        return _push_pull_compiled(kernel, rows, weight, at, patch, max_levels, blend)
    ys, xs = np.divmod(at, W)
    v0 = _gather(rows, at, patch)
    w0 = np.clip(weight.reshape(-1)[at], 0.0, 1.0).astype(np.float32)
    if not (w0 < 1.0).any():  # every pixel asked for is known: push_pull keeps it
        return v0.astype(np.float32, copy=True)
    wl = _pull_weights(weight, max_levels)
    if len(wl) == 1 or not (wl[0] > 0).any():  # push_pull stops at once / nothing to fill from
        return v0.astype(np.float32, copy=True) if (wl[0] > 0).any() else np.zeros((ys.size, C), np.float32)
    top = len(wl) - 1  # push_pull's last level: its value is the pulled one
    shapes = [w.shape for w in wl]
    # Top-down: the cells N_l and, for each, the four taps into level l + 1.
    need = [None]  # N_0 is the pixels themselves
    taps = []
    cy, cx = ys, xs
    for lev in range(1, top + 1):
        h, w = shapes[lev]
        if lev == 1 and blend == "at":
            y0, y1, fy = _taps_at(cy, h)
            x0, x1, fx = _taps_at(cx, w)
            quad = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
            taps.append((quad, fy, fx))
        else:
            ky, ny = _taps2(cy, h)
            kx, nx = _taps2(cx, w)
            taps.append((np.stack([ky * w + kx, ny * w + kx, ky * w + nx, ny * w + nx]), None, None))
        cells = _mark(h * w, taps[-1][0].reshape(-1))
        need.append(cells)
        if lev == top:
            break
        sel = np.flatnonzero(wl[lev].reshape(-1)[cells] < 1.0)
        if sel.size == 0:
            break
        cy, cx = np.divmod(cells[sel], w)
        need[-1] = (cells, sel)
    last = len(need) - 1
    # Bottom-up pull over P_l (values in per-level arrays, written only at P_l).
    pulled = [None] * (last + 1)
    p_cells = [None] * (last + 1)
    p = need[last][0] if isinstance(need[last], tuple) else need[last]
    for lev in range(last, 0, -1):
        n_l = need[lev][0] if isinstance(need[lev], tuple) else need[lev]
        h, w = shapes[lev]
        p = n_l if lev == last else _mark(h * w, np.concatenate([n_l, p]))
        p_cells[lev] = p
        if lev > 1:  # children of P_lev at lev - 1
            ch, cw = shapes[lev - 1]
            py, px = np.divmod(p, w)
            kids = []
            for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
                y, x = 2 * py + dy, 2 * px + dx
                ok = (y < ch) & (x < cw)
                kids.append((y * cw + x)[ok])
            p = np.concatenate(kids)
    wl0 = wl[0].reshape(-1)
    for lev in range(1, last + 1):
        h, w = shapes[lev]
        ch, cw = shapes[lev - 1]
        cells = p_cells[lev]
        py, px = np.divmod(cells, w)
        if lev > 1:
            below, wbelow = pulled[lev - 1], wl[lev - 1].reshape(-1)
        csum = wsum = None
        # push_pull's order: a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
            y, x = 2 * py + dy, 2 * px + dx
            ok = (y < ch) & (x < cw)
            full = ok.all()
            if not full:
                y, x = np.where(ok, y, 0), np.where(ok, x, 0)
            if lev == 1:
                k = y * cw + x
                v, wk = _gather(rows, k, patch), wl0[k]
            else:
                k = y * cw + x
                v, wk = below[k], wbelow[k]
            prod = v * wk[:, None]
            if not full:
                prod[~ok] = 0.0
                wk = np.where(ok, wk, np.float32(0.0))
            csum = prod if csum is None else csum + prod
            wsum = wk if wsum is None else wsum + wk
        vals = np.empty((h * w, C), np.float32)
        vals[cells] = csum / np.maximum(wsum, 1e-12)[:, None]
        pulled[lev] = vals
    # Top-down push over N_l: out = w * value + (1 - w) * upsampled coarser output.
    filled = None
    for lev in range(last, 0, -1):
        h, w = shapes[lev]
        entry = need[lev]
        cells, sel = entry if isinstance(entry, tuple) else (entry, None)
        out = np.empty((h * w, C), np.float32)
        v = pulled[lev][cells]
        if sel is not None and lev < last:
            quad, _, _ = taps[lev]  # level lev's taps into lev + 1 (for the sel cells)
            f = filled
            up = 0.75 * (0.75 * f[quad[0]] + 0.25 * f[quad[1]]) + 0.25 * (
                0.75 * f[quad[2]] + 0.25 * f[quad[3]]
            )
            ws = wl[lev].reshape(-1)[cells[sel]][:, None]
            v[sel] = ws * v[sel] + (1.0 - ws) * up
        out[cells] = v
        filled = out
    quad, fy, fx = taps[0]
    f = filled
    if blend == "at":
        t = f[quad[0]] * (1 - fx) + f[quad[1]] * fx
        b = f[quad[2]] * (1 - fx) + f[quad[3]] * fx
        up = (t * (1 - fy) + b * fy).astype(np.float32, copy=False)
    else:
        up = 0.75 * (0.75 * f[quad[0]] + 0.25 * f[quad[1]]) + 0.25 * (0.75 * f[quad[2]] + 0.25 * f[quad[3]])
    wa = w0[:, None]
    return wa * v0 + (1.0 - wa) * up
