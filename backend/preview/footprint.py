"""The footprints of magnified sources in forward splatting (splat.py's numpy path).

A dolly toward an object spreads its source pixels farther apart than one target pixel, and
one bilinear sample each would leave cracks between them. Such a source is replaced by a grid of
samples over the area it covers in the target (footprint_samples). Positions are target pixel
index units, (H, W) float32, as in splat.py; splat_kernel compiles the same arithmetic.
"""

from __future__ import annotations

import numpy as np

# Magnified sources (a dolly-in) are split into up to this many samples per axis (see
# _footprint_samples); neighbours farther apart than FOOTPRINT_MAX_GAP pixels are a depth edge.
MAX_FOOTPRINT = 8
FOOTPRINT_SPACING = 1.6
FOOTPRINT_MAX_GAP = 16.0
# A footprint also spans toward its farther neighbour when that one is at most this many times
# as far as the nearer one (uneven magnification); farther: a tear, left open.
FOOTPRINT_TAPER = 2.0
_F32 = np.float32


def _neighbour_gaps(px: np.ndarray, py: np.ndarray, ok: np.ndarray, axis: int):
    """Squared target-space distance from each source pixel to its neighbour along `axis` (the
    next one), (H-1, W) or (H, W-1) float32, inf where either is not ok; and the differences
    dx, dy of the same shape."""
    dx = np.diff(px, axis=axis)
    dy = np.diff(py, axis=axis)
    n2 = dx * dx
    n2 += dy * dy
    both = ok[:-1] & ok[1:] if axis == 0 else ok[:, :-1] & ok[:, 1:]
    n2[~both] = np.inf
    return n2, dx, dy


def _sides_at(n2: np.ndarray, r: np.ndarray, c: np.ndarray, axis: int):
    """The squared gaps to the next and to the previous neighbour of the pixels (r, c) along
    `axis` (inf beyond the image), from _neighbour_gaps' n2."""
    pos, n = (c, n2.shape[1] + 1) if axis == 1 else (r, n2.shape[0] + 1)
    i_n, i_p = np.clip(pos, 0, n - 2), np.clip(pos - 1, 0, n - 2)
    if axis == 1:
        nxt, prv = n2[r, i_n], n2[r, i_p]
    else:
        nxt, prv = n2[i_n, c], n2[i_p, c]
    inf = _F32(np.inf)
    return np.where(pos < n - 1, nxt, inf), np.where(pos > 0, prv, inf)


def _nearest_gap(n2: np.ndarray, axis: int) -> np.ndarray:
    """Per pixel, the smaller squared gap to its two neighbours along `axis`: (H, W) float32."""
    H, W = (n2.shape[0] + 1, n2.shape[1]) if axis == 0 else (n2.shape[0], n2.shape[1] + 1)
    out = np.full((H, W), np.inf, np.float32)
    if axis == 1:
        out[:, :-1] = n2
        np.minimum(out[:, 1:], n2, out=out[:, 1:])
    else:
        out[:-1] = n2
        np.minimum(out[1:], n2, out=out[1:])
    return out


def footprint_samples(px: np.ndarray, py: np.ndarray, ok: np.ndarray, max_k: int):
    """Extra samples that close the cracks of magnified surfaces (a dolly toward an object).

    A source pixel covers the parallelogram spanned by the target-space vectors to its
    neighbours along the row and along the column: half way to the nearer neighbour, and half way
    to the farther one when that is at most FOOTPRINT_TAPER times as far (a surface magnified
    unevenly, e.g. a face turning toward the camera: its texels grow from one to the next), else
    mirrored, so that depth edges and tears do not stretch it. When a side is longer than
    FOOTPRINT_SPACING pixels, the pixel is replaced by kx * ky samples on a
    grid inside that parallelogram (k = ceil(length / spacing), at most max_k), each weighing
    1 / (kx * ky) times its side's length over the mean of the two sides (even coverage), all
    with the pixel's colour and depth. px, py, ok: (H, W) float32 target
    positions. Returns (x, y, weight, source index, replaced sources) or None when nothing is
    magnified. Full-image work is a handful of array operations; the rest runs on the few
    magnified pixels only."""
    H, W = px.shape
    lo, hi = np.float32(FOOTPRINT_SPACING**2), np.float32(FOOTPRINT_MAX_GAP**2)
    gu = _neighbour_gaps(px, py, ok, 1)
    gv = _neighbour_gaps(px, py, ok, 0)
    nu, nv = _nearest_gap(gu[0], 1), _nearest_gap(gv[0], 0)
    need = (nu > lo) & (nu <= hi)
    need |= (nv > lo) & (nv <= hi)
    need &= ok
    flat = np.flatnonzero(need)
    if flat.size == 0:
        return None
    r, c = np.divmod(flat, W)

    def count_and_vectors(gaps, axis):
        """Samples along the axis, and the vectors to the previous (a = p - prev) and to the
        next (b = next - p) neighbour, half of each spanned by the footprint."""
        n2, dx, dy = gaps
        nn, pn = _sides_at(n2, r, c, axis)  # squared, inf: no neighbour
        near = np.minimum(nn, pn)
        use = (near > lo) & (near <= hi)
        # The nearer side always; the farther one too when it is no depth edge: within the gap
        # limit and at most FOOTPRINT_TAPER times as long (a surface magnified unevenly, e.g. a
        # face turning toward the camera); otherwise the nearer side is mirrored (a tear stays
        # open, as before).
        cap = np.minimum(near * np.float32(FOOTPRINT_TAPER**2), hi)
        use_n = use & (nn <= cap)
        use_p = use & (pn <= cap)
        if axis == 1:
            i_n, i_p = np.clip(c, 0, W - 2), np.clip(c - 1, 0, W - 2)
            nvx, nvy, pvx, pvy = dx[r, i_n], dy[r, i_n], dx[r, i_p], dy[r, i_p]
        else:
            i_n, i_p = np.clip(r, 0, H - 2), np.clip(r - 1, 0, H - 2)
            nvx, nvy, pvx, pvy = dx[i_n, c], dy[i_n, c], dx[i_p, c], dy[i_p, c]
        zero = np.float32(0.0)
        ax = np.where(use_p, pvx, np.where(use_n, nvx, zero))
        ay = np.where(use_p, pvy, np.where(use_n, nvy, zero))
        bx = np.where(use_n, nvx, ax)
        by = np.where(use_n, nvy, ay)
        longest = np.maximum(ax * ax + ay * ay, bx * bx + by * by)
        k = np.where(use, np.ceil(np.sqrt(longest) / FOOTPRINT_SPACING), 1.0)
        return np.clip(k, 1, max_k).astype(np.int64), ax, ay, bx, by

    kxs, uax, uay, ubx, uby = count_and_vectors(gu, 1)
    kys, vax, vay, vbx, vby = count_and_vectors(gv, 0)

    def shares(ax, ay, bx, by):
        la, lb = np.hypot(ax, ay), np.hypot(bx, by)
        mean = np.maximum(0.5 * (la + lb), np.float32(1e-6))
        return la / mean, lb / mean

    ulen_a, ulen_b = shares(uax, uay, ubx, uby)
    vlen_a, vlen_b = shares(vax, vay, vbx, vby)
    xs, ys, ws, ids = [], [], [], []
    pxf, pyf = px.reshape(-1)[flat], py.reshape(-1)[flat]
    for a, b in set(zip(kxs.tolist(), kys.tolist())):
        sel = np.flatnonzero((kxs == a) & (kys == b))
        oa = (np.arange(a) + 0.5) / a - 0.5  # offsets in [-0.5, 0.5] along the row
        ob = (np.arange(b) + 0.5) / b - 0.5  # ... and along the column
        ga, gb = (g.reshape(-1, 1).astype(np.float32) for g in np.meshgrid(oa, ob, indexing="ij"))
        neg_a, neg_b = ga < 0, gb < 0  # toward the previous neighbour: its vector
        ux = np.where(neg_a, uax[sel], ubx[sel])
        uy = np.where(neg_a, uay[sel], uby[sel])
        vx = np.where(neg_b, vax[sel], vbx[sel])
        vy = np.where(neg_b, vay[sel], vby[sel])
        xs.append((pxf[sel] + ga * ux + gb * vx).reshape(-1))
        ys.append((pyf[sel] + ga * uy + gb * vy).reshape(-1))
        # Samples are even in the offset, so a side twice as long holds them twice as sparse:
        # weighted by their side's length over the mean of both (1 for the middle sample of an
        # odd count), the coverage stays even and each source still weighs 1 in all.
        wu = np.where(neg_a, ulen_a[sel], np.where(ga > 0, ulen_b[sel], 1.0)) if a > 1 else 1.0
        wv = np.where(neg_b, vlen_a[sel], np.where(gb > 0, vlen_b[sel], 1.0)) if b > 1 else 1.0
        ws.append((np.broadcast_to(wu * wv, (a * b, sel.size)) / (a * b)).reshape(-1))
        ids.append(np.broadcast_to(flat[sel], (a * b, sel.size)).reshape(-1))
    return (
        np.concatenate(xs).astype(np.float32),
        np.concatenate(ys).astype(np.float32),
        np.concatenate(ws).astype(np.float32),
        np.concatenate(ids),
        flat,
    )
