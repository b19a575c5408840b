"""splat.forward_splat compiled with numba: a few passes over the source pixels, no per-sample
arrays. Imported only where numba is installed (splat.compiled_kernel); without it splat.py runs
its numpy path.

What it computes is splat.py's (see there for the conventions), step for step: the importance of
every valid source from its depth, one bilinear sample at its target position, or, where it is
magnified, the grid of footprint samples of footprint.footprint_samples (same gaps, taper, counts,
offsets and weights); each sample adds weight * (colour * importance, importance * depth ratio,
importance, 1) to the four canvas pixels around it; the canvas is then normalised into colour,
coverage, depth and holes. float32 throughout, as the numpy path; the sums are taken in another
order (per source pixel, row-major) and the importance by repeated squaring (a whole sharpness,
as the default) or powf instead of exp/log, so results differ from it by float32 rounding only
(tests/backend/test_splat.py states the tolerance).

Compiled on first use and cached on disk (numba's cache: __pycache__ beside this file, or the
user's cache folder where that is read-only); `nogil`, so the frame threads run it side by side.
"""

from __future__ import annotations

import numba
import numpy as np

# Canvas values per pixel (K): the C colours times the importance, the importance, the coverage,
# and (with the splatted depth) the depth ratio times the importance.
f32 = np.float32

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_jit
def depth_range(depth, ok, cap):
    """(z_min, far) over the sources: z_min the nearest finite depth > 0 among the ok ones (1.0
    when none); far = 10x the largest finite depth > 0 of all sources over z_min, capped at
    `cap` (1.0 when none): the stand-in depth ratio of sources at infinity (splat.py)."""
    H, W = ok.shape
    zmin = f32(np.inf)
    zmax = f32(0.0)
    for i in range(H):
        for j in range(W):
            z = depth[i, j]
            if np.isfinite(z) and z > 0:
                zmax = max(zmax, z)
                if ok[i, j]:
                    zmin = min(zmin, z)
    if not np.isfinite(zmin):
        zmin = f32(1.0)
    far = f32(10.0) * min(zmax / zmin, cap) if zmax > 0 else f32(1.0)
    return zmin, far


@_jit
def prepare(flow, valid, has_valid, ok, px, py, gu, gv):
    """Target positions px, py (H, W) float32 (index units) of flow (H, W, 2) float32; ok (H, W)
    bool: finite and valid (valid (H, W) bool, read when has_valid); the squared target gaps to
    the next source along the row, gu, and the column, gv, (H, W) float32, inf where either
    source is not ok or beyond the image."""
    H, W = ok.shape
    inf = f32(np.inf)
    for i in range(H):
        for j in range(W):
            x = f32(j) + flow[i, j, 0]
            y = f32(i) + flow[i, j, 1]
            px[i, j] = x
            py[i, j] = y
            ok[i, j] = (not has_valid or valid[i, j]) and np.isfinite(x) and np.isfinite(y)
    for i in range(H):
        for j in range(W):
            g = inf
            if j + 1 < W and ok[i, j] and ok[i, j + 1]:
                dx = px[i, j + 1] - px[i, j]
                dy = py[i, j + 1] - py[i, j]
                g = dx * dx + dy * dy
            gu[i, j] = g
            g = inf
            if i + 1 < H and ok[i, j] and ok[i + 1, j]:
                dx = px[i + 1, j] - px[i, j]
                dy = py[i + 1, j] - py[i, j]
                g = dx * dx + dy * dy
            gv[i, j] = g


@_inline
def _add(x, y, w, v, sums, K):
    """Adds the K values v (K,) of one sample at continuous index position (x, y) with weight w
    to the canvas sums (H + 3, W + 3, K), whose pixel (r + 1, c + 1) is image pixel
    (r, c); positions are clamped onto its ring (cropped later)."""
    H, W = sums.shape[0] - 3, sums.shape[1] - 3
    if x < f32(-1.0):
        x = f32(-1.0)
    elif x > f32(W + 0.5):
        x = f32(W + 0.5)
    if y < f32(-1.0):
        y = f32(-1.0)
    elif y > f32(H + 0.5):
        y = f32(H + 0.5)
    x0 = np.floor(x)
    y0 = np.floor(y)
    ax = x - x0
    wy1 = (y - y0) * w
    wy0 = w - wy1
    w01 = ax * wy0
    w00 = wy0 - w01
    w11 = ax * wy1
    w10 = wy1 - w11
    row = sums[int(y0) + 1]
    nxt = sums[int(y0) + 2]
    c = int(x0) + 1
    a, b, p, q = row[c], row[c + 1], nxt[c], nxt[c + 1]
    for k in range(K):
        t = v[k]
        a[k] += w00 * t
        b[k] += w01 * t
        p[k] += w10 * t
        q[k] += w11 * t


@_inline
def _power(q, n):
    """q ** n for a whole n >= 1 by repeated squaring (float32)."""
    r = f32(1.0)
    while n:
        if n & 1:
            r *= q
        q *= q
        n >>= 1
    return r


@_inline
def _side(px, py, gap, i, j, di, dj, lo, hi, taper2, spacing, max_k):
    """One axis of a source's footprint (footprint.footprint_samples' count_and_vectors): sample
    count and the vectors a (from the previous neighbour) and b (to the next one). gap: the
    squared gaps along the axis, gap[i, j] between (i, j) and (i + di, j + dj)."""
    H, W = px.shape
    inf = f32(np.inf)
    nn = gap[i, j] if (i + di < H and j + dj < W) else inf
    pn = gap[i - di, j - dj] if (i - di >= 0 and j - dj >= 0) else inf
    near = min(nn, pn)
    zero = f32(0.0)
    ax = ay = bx = by = zero
    k = 1
    if near > lo and near <= hi:
        cap = min(near * taper2, hi)
        use_n = nn <= cap
        use_p = pn <= cap
        if use_p:
            ax = px[i, j] - px[i - di, j - dj]
            ay = py[i, j] - py[i - di, j - dj]
        if use_n:
            bx = px[i + di, j + dj] - px[i, j]
            by = py[i + di, j + dj] - py[i, j]
            if not use_p:
                ax, ay = bx, by
        else:
            bx, by = ax, ay
        longest = max(ax * ax + ay * ay, bx * bx + by * by)
        k = min(max(int(np.ceil(np.sqrt(longest) / spacing)), 1), max_k)
    return k, ax, ay, bx, by


@_inline
def _shares(ax, ay, bx, by):
    """The lengths of a footprint axis's two vectors over their mean (footprint.footprint_samples'
    shares): the weights of the samples on each side, so that the coverage stays even."""
    la, lb = np.hypot(ax, ay), np.hypot(bx, by)
    mean = max(f32(0.5) * (la + lb), f32(1e-6))
    return la / mean, lb / mean


@_inline
def _axis_sample(s, count, ax, ay, bx, by, len_a, len_b):
    """Sample s of `count` along one footprint axis: its offset g in [-0.5, 0.5] (float32), the
    vector g scales (a, toward the previous neighbour, for g < 0; else b) and its weight (its
    side's share; 1 in the middle, so for a single sample too)."""
    g = f32((s + 0.5) / count - 0.5)
    if g < 0:
        return g, ax, ay, len_a
    return g, bx, by, len_b if g > 0 else f32(1.0)


@_jit
def splat(ok, px, py, gu, gv, img, depth, params, sums):
    """_splat with K = sums.shape[2] a constant for the usual canvases (RGB with and without the
    depth ratio): its loops over the values then unroll."""
    K = sums.shape[2]
    if K == 5:
        _splat(ok, px, py, gu, gv, img, depth, params, sums, 5)
    elif K == 6:
        _splat(ok, px, py, gu, gv, img, depth, params, sums, 6)
    else:
        _splat(ok, px, py, gu, gv, img, depth, params, sums, K)


@_inline
def _splat(ok, px, py, gu, gv, img, depth, params, sums, K):
    """Adds every ok source (prepare's arrays) to sums (H + 3, W + 3, K) float32 zeros: one
    sample, or the footprint samples of a magnified one (a gap to a row or column neighbour in
    (lo, hi], squared pixels). img (H, W, C) uint8 or float32, K = C + 2 or C + 3; depth (H, W)
    float32 or None-like (params has_depth 0: importance 1). params (float32): has_depth,
    want_ratio, zmin, far, ratio cap, importance top, floor and sharpness, max_k, lo, hi,
    taper2, spacing."""
    H, W = ok.shape
    C = img.shape[2]
    has_depth, want_ratio, zmin, far, cap = params[0] > 0, params[1] > 0, params[2], params[3], params[4]
    top, floor, sharp = params[5], params[6], params[7]
    max_k, lo, hi, taper2, spacing = int(params[8]), params[9], params[10], params[11], params[12]
    one = f32(1.0)
    inf = f32(np.inf)
    # importance = e^top * (z / zmin) ** -sharp, at least e^-floor: q ** sharp with
    # q = e^(top / sharp) * zmin / z clamped at e^(-floor / sharp); by squaring for a whole
    # sharpness (the default 30: 7 products instead of a powf)
    q_scale = np.exp(top / sharp) * zmin
    q_min = np.exp(-floor / sharp)
    whole = int(sharp)
    if whole != sharp or whole > 1024:
        whole = 0
    v = np.zeros(K, np.float32)
    for i in range(H):
        for j in range(W):
            if not ok[i, j]:
                continue
            p = one
            if has_depth:
                z = depth[i, j]
                if z > 0:
                    q = max(q_scale / z, q_min)  # z = inf: the floor
                    p = _power(q, whole) if whole else q**sharp
                else:
                    p = f32(0.0)  # NaN or <= 0: no importance; its coverage still counts
                if want_ratio:
                    ratio = min(z / zmin, cap) if np.isfinite(z) and z > 0 else far
                    v[C + 2] = p * ratio
            for k in range(C):
                v[k] = f32(img[i, j, k]) * p
            v[C] = p
            v[C + 1] = one
            x, y = px[i, j], py[i, j]
            if max_k > 1:
                nu = min(gu[i, j], gu[i, j - 1] if j > 0 else inf)
                nv = min(gv[i, j], gv[i - 1, j] if i > 0 else inf)
                if (nu > lo and nu <= hi) or (nv > lo and nv <= hi):
                    a, uax, uay, ubx, uby = _side(px, py, gu, i, j, 0, 1, lo, hi, taper2, spacing, max_k)
                    b, vax, vay, vbx, vby = _side(px, py, gv, i, j, 1, 0, lo, hi, taper2, spacing, max_k)
                    ulen_a, ulen_b = _shares(uax, uay, ubx, uby)
                    vlen_a, vlen_b = _shares(vax, vay, vbx, vby)
                    n = f32(a * b)
                    for s in range(a):
                        ga, ux, uy, wu = _axis_sample(s, a, uax, uay, ubx, uby, ulen_a, ulen_b)
                        for t in range(b):
                            gb, vx, vy, wv = _axis_sample(t, b, vax, vay, vbx, vby, vlen_a, vlen_b)
                            _add(x + ga * ux + gb * vx, y + ga * uy + gb * vy, wu * wv / n, v, sums, K)
                    continue
            _add(x, y, one, v, sums, K)


@_jit
def finish(sums, C, with_depth, min_coverage, far, zmin, out, coverage, depth, hole):
    """Normalises the canvas: out (H, W, C) colour (0 in holes), coverage (H, W), hole (H, W)
    bool, and depth (H, W) (written when with_depth): the weighted depth ratio times zmin, inf
    in holes and where sources at infinity (ratio `far`) dominate. Leaves the canvas zeroed, for
    the next frame (splat.py keeps one per thread)."""
    H, W = hole.shape
    for i in range(H):
        for j in range(W):
            cov = sums[i + 1, j + 1, C + 1]
            den = sums[i + 1, j + 1, C]
            h = cov < min_coverage or den <= 0
            coverage[i, j] = cov
            hole[i, j] = h
            inv = f32(1.0) if h else f32(1.0) / den
            for k in range(C):
                out[i, j, k] = f32(0.0) if h else sums[i + 1, j + 1, k] * inv
            if with_depth:
                z = sums[i + 1, j + 1, C + 2] * inv
                depth[i, j] = np.inf if (h or z >= f32(0.5) * far) else z * zmin
        sums[i + 1] = f32(0.0)  # the row just read, its ring cells included: still in cache
    sums[0] = f32(0.0)
    sums[H + 1 :] = f32(0.0)
