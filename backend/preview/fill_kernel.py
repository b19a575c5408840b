"""pushpull.push_pull_sparse compiled with numba: the push-pull fill at a set of pixels in one call,
no per-level numpy temporaries, the GIL released. Imported only where numba is installed
(pushpull.compiled_kernel); without it pushpull.py runs its numpy path.

What it computes is pushpull.push_pull_flat's, bitwise (the same float32 operations in the same
order per value; tests/backend/test_fill.py compares them): the weight pyramid w_0 = clip(weight,
0, 1), w_l = min(1, sum2x2(w_{l-1})) (odd sizes padded with zero weight, the sum in the order
a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) down to push_pull's last level,
whole (one channel); then only the cells the pixels depend on:
- N_l, the cells whose pushed value is needed: the upsampling taps of the pixels (level 1), then
  of the cells of N_l whose weight is below 1 (level l + 1), down to where none is;
- P_l, the cells whose pulled value is needed: N_l and the children of P_{l+1};
- pull over P_l, bottom-up: value = sum2x2(value * w) / max(sum2x2(w), 1e-12);
- push over N_l, top-down: w * value + (1 - w) * upsample(coarser), the bilinear 2x taps
  (0.75 / 0.25 per axis), at the pixels with push_pull's `at` taps (blend "at") or the 2x taps
  (blend "full").
Levels >= 1 share flat buffers (weights, values (., C), a uint8 mask of N / P bits), level l at
offsets[l] as an (h_l, w_l) row-major view; the values are written only at P_l, and the pushed
ones over them in place. Each row of each level keeps the span of its marked columns, and the
scans over N and P stay within those spans: beyond the weight pyramid and one zeroed mask, the
work follows the holes. ~2.5 ms at 1920 x 1080 on the benchmark frames, ~0.9 of them the weight
pyramid (reading the frame's float32 weights), where fill.py's numpy path takes ~14 ms.
Also here: to_u8, fill._to_u8 (the frame's uint8 conversion) in one pass.

Compiled on first use and cached on disk (numba's cache: __pycache__ beside this file, or the
user's cache folder where that is read-only).
"""

from __future__ import annotations

import numba
import numpy as np

f32 = np.float32
MAX_LEVELS = 32  # more than any image has (a side of 2 ** 32 pixels)

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

IN_N = np.uint8(1)  # mask bits per cell: in N_l, in P_l, holds a patched pixel (level 1)
IN_P = np.uint8(2)
PATCHED = np.uint8(4)


@_inline
def _clip01(w):
    """np.clip(w, 0, 1) for a float32 scalar (NaN becomes 0: weights are finite)."""
    w = w if w > f32(0.0) else f32(0.0)
    return w if w < f32(1.0) else f32(1.0)


@_inline
def _find(idx, k):
    """The position of k in the sorted int64 array idx, or -1."""
    lo, hi = 0, idx.size
    while lo < hi:
        mid = (lo + hi) // 2
        if idx[mid] < k:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < idx.size and idx[lo] == k else -1


@_inline
def _tap2(i, n):
    """_upsample2's taps along one axis for fine index i: (the coarse cell i // 2, weight 0.75;
    its neighbour on i's side, 0.25, clamped to [0, n - 1])."""
    k = i // 2
    j = k - 1 if i % 2 == 0 else k + 1
    return k, min(max(j, 0), n - 1)


@_inline
def _tap_at(i, n):
    """push_pull's `at` taps along one axis for fine index i: (i0, i1, fraction float32)."""
    v = (f32(i) + f32(0.5)) * f32(0.5) - f32(0.5)
    i0 = np.floor(v)
    f = v - i0
    k = int(i0)
    return min(max(k, 0), n - 1), min(max(k + 1, 0), n - 1), f


@_inline
def _mark4(m, span, ky, ny, kx, nx, bits):
    """Sets `bits` in the mask m (h, w) at the four cells (ky|ny, kx|nx) and widens the rows'
    spans (span (h, 2): the first and last marked column of each row) to hold them."""
    m[ky, kx] |= bits
    m[ny, kx] |= bits
    m[ky, nx] |= bits
    m[ny, nx] |= bits
    lo, hi = min(kx, nx), max(kx, nx)
    for y in (ky, ny):
        span[y, 0] = min(span[y, 0], lo)
        span[y, 1] = max(span[y, 1], hi)


@_inline
def _up2(a, c, ky, ny, kx, nx):
    """_upsample2's value from the four taps (ky|ny, kx|nx) of level a (h, w, C), channel c:
    0.75 * (0.75 a[ky, kx] + 0.25 a[ny, kx]) + 0.25 * (0.75 a[ky, nx] + 0.25 a[ny, nx])."""
    p, q, r, s = a[ky, kx, c], a[ny, kx, c], a[ky, nx, c], a[ny, nx, c]
    return f32(0.75) * (f32(0.75) * p + f32(0.25) * q) + f32(0.25) * (f32(0.75) * r + f32(0.25) * s)


@_jit
def _sum_level(src, dst, clip):
    """dst (hn, wn) = min(1, sum2x2(src (h, w) padded to even with zeros)), src clipped to
    [0, 1] as read where `clip`; the sum in push_pull's order. Returns (cells < 1, cells > 0)."""
    h, w = src.shape
    hn, wn = dst.shape
    one = f32(1.0)
    zero = f32(0.0)
    nlow = 0
    npos = 0
    for y in range(hn):
        t = src[2 * y]
        r = dst[y]
        b = src[2 * y + 1] if 2 * y + 1 < h else t
        if 2 * y + 1 < h:
            for x in range(w // 2):
                if clip:
                    s = _clip01(t[2 * x]) + _clip01(b[2 * x]) + _clip01(t[2 * x + 1]) + _clip01(b[2 * x + 1])
                else:
                    s = t[2 * x] + b[2 * x] + t[2 * x + 1] + b[2 * x + 1]
                s = s if s < one else one
                r[x] = s
                nlow += np.int64(s < one)
                npos += np.int64(s > zero)
        else:
            for x in range(w // 2):
                if clip:
                    s = _clip01(t[2 * x]) + zero + _clip01(t[2 * x + 1]) + zero
                else:
                    s = t[2 * x] + zero + t[2 * x + 1] + zero
                s = s if s < one else one
                r[x] = s
                nlow += np.int64(s < one)
                npos += np.int64(s > zero)
        if w % 2:
            x = wn - 1
            a = _clip01(t[2 * x]) if clip else t[2 * x]
            c = zero
            if 2 * y + 1 < h:
                c = _clip01(b[2 * x]) if clip else b[2 * x]
            s = a + c + zero + zero
            s = s if s < one else one
            r[x] = s
            nlow += np.int64(s < one)
            npos += np.int64(s > zero)
    return nlow, npos


@_jit
def level_shapes(H, W, max_levels):
    """(hs, ws, offsets) int64: the pyramid's level sizes (hs[0], ws[0] = H, W; then halved,
    rounded up; 0 past the last) down to max_levels or a side of one cell, and the offsets of
    levels >= 1 in the shared buffers (offsets[1] = 0, offsets[l + 1] = offsets[l] + hs[l] * ws[l])."""
    hs = np.zeros(MAX_LEVELS + 1, np.int64)
    ws = np.zeros(MAX_LEVELS + 1, np.int64)
    offsets = np.zeros(MAX_LEVELS + 2, np.int64)
    hs[0], ws[0] = H, W
    lev = 0
    while lev < min(max_levels, MAX_LEVELS - 1) and min(hs[lev], ws[lev]) > 1:
        hs[lev + 1] = (hs[lev] + 1) // 2
        ws[lev + 1] = (ws[lev] + 1) // 2
        offsets[lev + 2] = offsets[lev + 1] + hs[lev + 1] * ws[lev + 1]
        lev += 1
    return hs, ws, offsets


@_jit
def push_pull_at(rows, weight, at, patch_idx, patch_vals, max_levels, full, out):
    """pushpull.push_pull_flat into out (n, C) float32. rows (H * W, C) the image (uint8, float32 or
    float64, read as float32), C-contiguous; weight (H, W) float32 (clipped to [0, 1] as read);
    at (n,) int64 sorted flat pixel indices; patch_idx (p,) int64 sorted flat indices whose image
    values patch_vals (p, C) float32 replace; max_levels: push_pull's; full: blend "full" (the 2x
    upsampling taps at the pixels) instead of "at"."""
    H, W = weight.shape
    n = at.size
    C = rows.shape[1]
    img = rows.reshape(H, W, C)
    one = f32(1.0)
    zero = f32(0.0)
    npatch = patch_idx.size
    below1 = False
    j = 0  # at and patch_idx are sorted: one merge
    for i in range(n):  # the pixels' own values and weights
        k = at[i]
        while j < npatch and patch_idx[j] < k:
            j += 1
        if j < npatch and patch_idx[j] == k:
            for c in range(C):
                out[i, c] = patch_vals[j, c]
        else:
            for c in range(C):
                out[i, c] = f32(rows[k, c])
        if _clip01(weight[k // W, k % W]) < one:
            below1 = True
    if n == 0 or not below1:
        return  # every pixel asked for is known: push_pull keeps it
    hs, ws, offsets = level_shapes(H, W, max_levels)
    if hs[1] == 0:  # push_pull stops at once: the image, or zeros with nothing to fill from
        for y in range(H):
            for x in range(W):
                if _clip01(weight[y, x]) > zero:
                    return
        out[:] = zero
        return
    # The weight pyramid, levels 1..top (level 0 is `weight`, clipped as read), whole.
    nlev = 1
    while nlev < MAX_LEVELS and hs[nlev + 1] > 0:
        nlev += 1
    total = offsets[nlev + 1]  # cells of levels 1..nlev in the shared buffers
    wbuf = np.empty(total, np.float32)
    top = 0
    for lev in range(1, nlev + 1):
        dst = wbuf[offsets[lev] : offsets[lev + 1]].reshape(hs[lev], ws[lev])
        if lev == 1:
            nlow, npos = _sum_level(weight, dst, True)
            if npos == 0:  # no known pixel: nothing to fill from
                out[:] = zero
                return
        else:
            src = wbuf[offsets[lev - 1] : offsets[lev]].reshape(hs[lev - 1], ws[lev - 1])
            nlow, npos = _sum_level(src, dst, False)
        top = lev
        if lev >= max_levels or min(hs[lev], ws[lev]) <= 1 or nlow == 0:
            break
    mask = np.zeros(total, np.uint8)
    both = IN_N | IN_P
    # Per level and row, the first and last column marked (the scans below stay within them).
    roffs = np.zeros(MAX_LEVELS + 2, np.int64)
    for lev in range(1, nlev + 1):
        roffs[lev + 1] = roffs[lev] + hs[lev]
    spans = np.empty((roffs[nlev + 1], 2), np.int64)
    spans[:, 0] = np.int64(1) << 62
    spans[:, 1] = -1
    # N_1: the taps of the pixels (and N_l is part of P_l).
    h1, w1 = hs[1], ws[1]
    m1 = mask[: offsets[2]].reshape(h1, w1)
    s1 = spans[: roffs[2]]
    for i in range(n):
        y, x = at[i] // W, at[i] % W
        if full:
            ky, ny = _tap2(y, h1)
            kx, nx = _tap2(x, w1)
        else:
            ky, ny, _ = _tap_at(y, h1)
            kx, nx, _ = _tap_at(x, w1)
        _mark4(m1, s1, ky, ny, kx, nx, both)
    # N_{l+1}: the taps of the cells of N_l whose weight is below 1, down to where none is.
    last = 1
    while last < top:
        h, w, nh, nw = hs[last], ws[last], hs[last + 1], ws[last + 1]
        m = mask[offsets[last] : offsets[last + 1]].reshape(h, w)
        wl = wbuf[offsets[last] : offsets[last + 1]].reshape(h, w)
        mn = mask[offsets[last + 1] : offsets[last + 2]].reshape(nh, nw)
        sp = spans[roffs[last] : roffs[last + 1]]
        sn = spans[roffs[last + 1] : roffs[last + 2]]
        found = False
        for y in range(h):
            for x in range(sp[y, 0], sp[y, 1] + 1):
                if m[y, x] & IN_N and wl[y, x] < one:
                    ky, ny = _tap2(y, nh)
                    kx, nx = _tap2(x, nw)
                    _mark4(mn, sn, ky, ny, kx, nx, both)
                    found = True
        if not found:
            break
        last += 1
    # P_l, from `last` up: N_l and the children of P_{l+1}.
    for lev in range(last - 1, 0, -1):
        h, w, ph, pw = hs[lev], ws[lev], hs[lev + 1], ws[lev + 1]
        m = mask[offsets[lev] : offsets[lev + 1]].reshape(h, w)
        mp = mask[offsets[lev + 1] : offsets[lev + 2]].reshape(ph, pw)
        sl = spans[roffs[lev] : roffs[lev + 1]]
        sp = spans[roffs[lev + 1] : roffs[lev + 2]]
        for y in range(ph):
            for x in range(sp[y, 0], sp[y, 1] + 1):
                if mp[y, x] & IN_P:
                    _mark4(m, sl, 2 * y, min(2 * y + 1, h - 1), 2 * x, min(2 * x + 1, w - 1), IN_P)
    for t in range(npatch):  # the level-1 cells holding a patched pixel
        k = patch_idx[t]
        m1[(k // W) // 2, (k % W) // 2] |= PATCHED
    # Pull over P_l, levels 1..last: value = sum2x2(v * w) / max(sum2x2(w), 1e-12).
    vbuf = np.empty((total, C), np.float32)
    for lev in range(1, last + 1):
        h, w, ch, cw = hs[lev], ws[lev], hs[lev - 1], ws[lev - 1]
        m = mask[offsets[lev] : offsets[lev + 1]].reshape(h, w)
        vals = vbuf[offsets[lev] : offsets[lev + 1]].reshape(h, w, C)
        sp = spans[roffs[lev] : roffs[lev + 1]]
        if lev == 1:
            _pull_level(img, weight, m, sp, vals, True, patch_idx, patch_vals)
        else:
            below = vbuf[offsets[lev - 1] : offsets[lev]].reshape(ch, cw, C)
            wbelow = wbuf[offsets[lev - 1] : offsets[lev]].reshape(ch, cw)
            _pull_level(below, wbelow, m, sp, vals, False, patch_idx, patch_vals)
    # Push over N_l, levels last - 1..1, in place: w * value + (1 - w) * upsample(level l + 1).
    for lev in range(last - 1, 0, -1):
        h, w, uh, uw = hs[lev], ws[lev], hs[lev + 1], ws[lev + 1]
        m = mask[offsets[lev] : offsets[lev + 1]].reshape(h, w)
        wl = wbuf[offsets[lev] : offsets[lev + 1]].reshape(h, w)
        vals = vbuf[offsets[lev] : offsets[lev + 1]].reshape(h, w, C)
        up_vals = vbuf[offsets[lev + 1] : offsets[lev + 2]].reshape(uh, uw, C)
        sp = spans[roffs[lev] : roffs[lev + 1]]
        for y in range(h):
            ky, ny = _tap2(y, uh)
            for x in range(sp[y, 0], sp[y, 1] + 1):
                wv = wl[y, x]
                if m[y, x] & IN_N and wv < one:
                    kx, nx = _tap2(x, uw)
                    for c in range(C):
                        up = _up2(up_vals, c, ky, ny, kx, nx)
                        vals[y, x, c] = wv * vals[y, x, c] + (one - wv) * up
    # The pixels.
    v1 = vbuf[: offsets[2]].reshape(h1, w1, C)
    for i in range(n):
        k = at[i]
        y, x = k // W, k % W
        wa = _clip01(weight[y, x])
        if full:
            ky, ny = _tap2(y, h1)
            kx, nx = _tap2(x, w1)
            for c in range(C):
                up = _up2(v1, c, ky, ny, kx, nx)
                out[i, c] = wa * out[i, c] + (one - wa) * up
        else:
            y0, y1, fy = _tap_at(y, h1)
            x0, x1, fx = _tap_at(x, w1)
            for c in range(C):
                tp = v1[y0, x0, c] * (one - fx) + v1[y0, x1, c] * fx
                bt = v1[y1, x0, c] * (one - fx) + v1[y1, x1, c] * fx
                up = tp * (one - fy) + bt * fy
                out[i, c] = wa * out[i, c] + (one - wa) * up


@_inline
def _pixel(img, patch_idx, patch_vals, y, x, c, W):
    """The image value at pixel (y, x), channel c, as float32, or its patch value."""
    j = _find(patch_idx, y * W + x)
    return patch_vals[j, c] if j >= 0 else f32(img[y, x, c])


@_jit
def _pull_level(below, wbelow, m, span, vals, first, patch_idx, patch_vals):
    """The pull at the cells of P (mask bit IN_P of m (h, w), within the rows' spans (h, 2), the
    first and last marked column) into vals (h, w, C): sum2x2(v * w)
    / max(sum2x2(w), 1e-12) from the finer level below (ch, cw, C) (the image, any real dtype,
    when `first`: its weights clipped to [0, 1] and its PATCHED cells' pixels looked up in
    patch_idx) and its weights wbelow (ch, cw); zeros beyond the finer level's edge; the sums in
    push_pull's order: (y0, x0), (y1, x0), (y0, x1), (y1, x1)."""
    h, w = m.shape
    ch, cw = wbelow.shape
    C = vals.shape[2]
    zero = f32(0.0)
    tiny = f32(1e-12)
    W = cw
    for y in range(h):
        y0, y1 = 2 * y, 2 * y + 1
        has1 = y1 < ch
        for x in range(span[y, 0], span[y, 1] + 1):
            cell = m[y, x]
            if not cell & IN_P:
                continue
            x0, x1 = 2 * x, 2 * x + 1
            if has1 and x1 < cw and not (first and cell & PATCHED):
                if first:
                    wa, wb = _clip01(wbelow[y0, x0]), _clip01(wbelow[y1, x0])
                    wc, wd = _clip01(wbelow[y0, x1]), _clip01(wbelow[y1, x1])
                else:
                    wa, wb, wc, wd = wbelow[y0, x0], wbelow[y1, x0], wbelow[y0, x1], wbelow[y1, x1]
                den = max(wa + wb + wc + wd, tiny)
                for c in range(C):
                    va, vb = f32(below[y0, x0, c]), f32(below[y1, x0, c])
                    vc, vd = f32(below[y0, x1, c]), f32(below[y1, x1, c])
                    vals[y, x, c] = (va * wa + vb * wb + vc * wc + vd * wd) / den
                continue
            hasx = x1 < cw
            patched = first and (cell & PATCHED) != 0
            wa = wbelow[y0, x0]
            wb = wbelow[y1, x0] if has1 else zero
            wc = wbelow[y0, x1] if hasx else zero
            wd = wbelow[y1, x1] if has1 and hasx else zero
            if first:
                wa, wb, wc, wd = _clip01(wa), _clip01(wb), _clip01(wc), _clip01(wd)
            den = max(wa + wb + wc + wd, tiny)
            for c in range(C):
                if patched:
                    va = _pixel(below, patch_idx, patch_vals, y0, x0, c, W)
                    vb = _pixel(below, patch_idx, patch_vals, y1, x0, c, W) if has1 else zero
                    vc = _pixel(below, patch_idx, patch_vals, y0, x1, c, W) if hasx else zero
                    vd = _pixel(below, patch_idx, patch_vals, y1, x1, c, W) if has1 and hasx else zero
                else:
                    va = f32(below[y0, x0, c])
                    vb = f32(below[y1, x0, c]) if has1 else zero
                    vc = f32(below[y0, x1, c]) if hasx else zero
                    vd = f32(below[y1, x1, c]) if has1 and hasx else zero
                vals[y, x, c] = (va * wa + vb * wb + vc * wc + vd * wd) / den


@_jit
def to_u8(a, out):
    """out = np.clip(np.rint(a), 0, 255).astype(np.uint8) for a (m,) float32 or float64 and out
    (m,) uint8 (rounding half to even, as np.rint; a finite)."""
    for i in range(a.size):
        v = np.rint(a[i])
        if v <= 0:
            out[i] = 0
        elif v >= 255:
            out[i] = 255
        else:
            out[i] = np.uint8(v)
