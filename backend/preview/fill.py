"""Filling the holes splatting leaves (disocclusions, revealed borders, magnification cracks).

Three fillers, one contract: `fill_holes(image (H, W, C) float32 or uint8 in [0, 255], hole (H, W)
bool, depth=None, method=...) -> (H, W, C) uint8`, known pixels unchanged (up to rounding).
- "background" (needs the depth of the known pixels): `background_fill`, the occluder
  beside each hole (the nearer side, found by scanning four directions) and the near content
  around it are kept out, then a push-pull pyramid over the remaining (background) pixels fills
  the hole smoothly. A disocclusion shows background, not a smear of the object that uncovered
  it; borders revealed by the camera continue the background next to them, without streaks.
- "pushpull": a pyramid "pull" averages the known pixels 2x2 level by level until a
  level has no hole; "push" walks back down, replacing every hole pixel by the bilinearly
  upsampled coarser level. O(H*W), any hole size, smooth (blurry) fill; no loop over pixels.
- "telea": OpenCV's fast-marching inpainting (cv2.inpaint, INPAINT_TELEA). Ignores depth, so it
  smears foreground into disocclusions (tests/backend/test_fill.py shows it).
"auto": "background" when a depth is given, else "telea" when OpenCV imports, else "pushpull".

Near the holes only: the cost follows the hole pixels, not the frame's. "background" finds each
hole pixel's nearest known pixels from the runs of hole pixels along rows and columns
(`hole_runs`, from the sorted flat indices of the hole pixels) and computes depths, surface
continuations, cracks and seeds at those pixels only (numpy); both fillers evaluate the
push-pull sparsely (`push_pull_sparse`: only the pyramid cells the hole pixels depend on, down
to where the weights reach 1, the same float32 arithmetic as the dense `push_pull`, bitwise).
The whole-frame work left is a few cheap passes: the uint8 conversion of the input, the hole's
flat indices, the one-channel weight map and its pyramid, the foreground test in the box a
seed's reach covers.

Two implementations of the push-pull (and of the uint8 conversion), the same bits: where numba
is installed, fill_kernel compiles them (`compiled_kernel()`: backend.compiled.load, once, on a
tiny problem; a kernel that does not build is a warning on stderr and the numpy path; nogil, so
the frame threads run side by side; `compiled=` of push_pull_sparse picks); else numpy
(`_push_pull_flat`: per-level index arrays over the needed cells). Blender's own Python has no
numba: there the numpy path runs, ~2.5x slower over the whole fill (1920 x 1080).
"""

from __future__ import annotations

import numpy as np

# Depth-aware fill ("background", see background_fill): the side of a hole more than FG_RATIO
# nearer than the other (and not on the same surface) is the occluder; the known pixels within
# EXCLUDE_REACH pixels of it that are no farther than it (x FG_TOLERANCE) are kept out of the
# fill. FAR_POWER is the reference value of fill_holes' far_preference (at 8 the ratio is FG_RATIO).
FAR_POWER = 8.0
FG_RATIO = 1.25
FG_TOLERANCE = 1.05
EXCLUDE_REACH = 64
# Two sides of a hole lie on one surface (neither occludes the other) when each side's surface,
# continued across the gap, meets the other within this fraction of the larger inverse depth.
SAME_SURFACE_TOLERANCE = 0.2
# Holes at most this wide between two sides on one surface are cracks: interpolated linearly.
CRACK = 3
METHODS = ("auto", "background", "pushpull", "telea")


def have_cv2() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def fill_holes(
    image: np.ndarray,
    hole: np.ndarray,
    *,
    depth: np.ndarray | None = None,
    method: str = "auto",
    radius: float = 3.0,
    far_preference: float = FAR_POWER,
) -> np.ndarray:
    """Fill `hole` (H, W) bool in `image` (H, W, C) in [0, 255]; returns (H, W, C) uint8.
    depth: (H, W) depth of the known pixels (scene units, larger = farther; inf allowed), used by
    "background" (far_preference is its power). method: see the module docstring and
    resolve_method. radius: Telea's neighbourhood in pixels. The known pixels are the input's,
    rounded and clipped; the work beyond that conversion follows the holes (module docstring)."""
    if image.shape[:2] != hole.shape:
        raise ValueError(f"image {image.shape} and hole {hole.shape} sizes differ")
    method = resolve_method(method, depth is not None)
    u8 = image if image.dtype == np.uint8 else _to_u8(image)
    if not hole.any():
        return u8
    if hole.all():  # nothing to fill from
        return np.zeros_like(u8)
    if method == "telea":
        import cv2

        return cv2.inpaint(np.ascontiguousarray(u8), hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    at = np.flatnonzero(hole)
    if method == "background":
        filled = background_values(image, hole, depth, power=far_preference, at=at)
    else:
        filled = _push_pull_flat(_rows(image), (~hole).astype(np.float32), at, blend="full")
    out = u8.copy() if u8 is image else u8  # a fresh conversion is ours to write into
    out.reshape(-1, out.shape[-1])[at] = _to_u8(filled)
    return out


def _to_u8(a: np.ndarray) -> np.ndarray:
    """np.clip(np.rint(a), 0, 255).astype(np.uint8) for a float array: one pass through
    fill_kernel.to_u8 where numba is installed, else numpy with one temporary."""
    kernel = compiled_kernel() if a.dtype in (np.float32, np.float64) else None
    if kernel is not None:
        out = np.empty(a.shape, np.uint8)
        kernel.to_u8(np.ascontiguousarray(a).reshape(-1), out.reshape(-1))
        return out
    r = np.rint(a)
    np.clip(r, 0, 255, out=r)
    return r.astype(np.uint8)


def resolve_method(method: str, have_depth: bool) -> str:
    """The filler `fill_holes` uses for `method` ("auto", "background", "pushpull", "telea"):
    "auto" as documented above; "background" without depth becomes "pushpull"; "telea" without
    OpenCV becomes "pushpull". Raises ValueError for an unknown name."""
    if method not in METHODS:
        raise ValueError(f"unknown fill method {method!r}; use one of {', '.join(METHODS)}")
    if method == "auto":
        method = "background" if have_depth else ("telea" if have_cv2() else "pushpull")
    if method == "background" and not have_depth:
        method = "pushpull"
    if method == "telea" and not have_cv2():
        method = "pushpull"
    return method


def background_fill(
    image: np.ndarray,
    hole: np.ndarray,
    depth: np.ndarray,
    *,
    power: float = FAR_POWER,
    reach: int = EXCLUDE_REACH,
):
    """Depth-aware fill from the background side only: (H, W, C) float32, hole pixels filled,
    known ones unchanged. depth: (H, W) of the known pixels; inf = at infinity (sky). The hole
    pixels' values alone: `background_values` (what fill_holes uses).

    1. Which side of a hole is the occluder. For every hole pixel the nearest known pixel is
       found in each of the four directions: the pixels just before and after its run of hole
       pixels along the row and along the column (`hole_runs`), so the work follows the holes.
       Along each axis with a known pixel on both sides, the two are one surface when each
       side's inverse depth, continued linearly across the gap (a plane, e.g. a floor seen at a
       grazing angle, whose depth grows fast from row to row), meets the other within
       SAME_SURFACE_TOLERANCE; otherwise the side more than FG_RATIO nearer is an occluder
       (a seed) and the other is background. Hole pixels with no such pair (strips and corners
       revealed at the image border) compare their candidates with the farthest finite one
       (ratio FG_RATIO ** 2). Content at infinity (sky) and invalid depths are never seeds and
       never make another candidate one: the sky beyond a floor does not turn the floor into an
       occluder, so a hole at the horizon continues both.
    2. Which known pixels are foreground: within `reach` pixels of a seed, those no farther than
       the seed's object (its nearest depth within 2 px, x FG_TOLERANCE): the whole near object,
       not just its rim, so that no coarse level below mixes it in. The confirmed background
       beside each hole stays in even where it is that near (a floor in front of the object).
    3. Fill: cracks (at most CRACK pixels across between two sides on one surface, e.g. a
       magnified surface torn open) are interpolated linearly across, crisp; the rest by a
       push-pull pyramid (`push_pull`) over the remaining known pixels, evaluated at the hole
       pixels only: a smooth, multi-scale continuation of the background around each hole,
       borders revealed by the camera included, without scan-line streaks.
    `power` (fill_holes' far_preference) sets the seed ratio: FG_RATIO ** (FAR_POWER / power)."""
    at = np.flatnonzero(hole)
    vals = background_values(image, hole, depth, power=power, reach=reach, at=at)
    out = image.astype(np.float32)  # always a copy
    out.reshape(-1, out.shape[-1])[at] = vals
    return out


def background_values(
    image: np.ndarray,
    hole: np.ndarray,
    depth: np.ndarray,
    *,
    power: float = FAR_POWER,
    reach: int = EXCLUDE_REACH,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """background_fill's values at the hole pixels: (n, C) float32 in np.flatnonzero(hole)
    order, computed from the hole pixels and their neighbourhoods (see background_fill); the
    whole-frame work is a few mask passes and push_pull_sparse's weight pyramid. `at`:
    np.flatnonzero(hole) when the caller has it already."""
    H, W = hole.shape
    C = image.shape[-1]
    hole_f = hole.reshape(-1)
    if at is None:
        at = np.flatnonzero(hole_f)  # hole pixels, row-major; their index in `at` is their id
    n = at.size
    if n == 0:
        return np.zeros((0, C), np.float32)
    pix = _Pixels(image, hole_f, depth)
    ratio = np.float32(FG_RATIO ** (FAR_POWER / max(power, 1e-6)))
    paired = np.zeros(n, bool)  # with known pixels on both sides along an axis
    crack_sum = np.zeros((n, C), np.float32)
    crack_n = np.zeros(n, np.float32)
    seeds, backs = [], []  # flat indices of occluders / confirmed background beside a hole
    cands = []  # (hole pixel ids, candidate flat indices, candidate inverse depths), per direction
    for axis, (ids, run, pos, line, first, last) in zip((1, 0), hole_runs(at, H, W)):
        # Along the rows, left and right; then along the columns, up and down. Position p of
        # a line is the flat index base + p * stride.
        size, stride, base = (W, 1, line * W) if axis == 1 else (H, W, line)
        pl = first - 1  # the nearest known position before the run (-1: none)
        pr = np.where(last + 1 < size, last + 1, -1)
        izl = np.where(pl >= 0, pix.iz(base + pl * stride), np.float32(0.0))
        izr = np.where(pr >= 0, pix.iz(base + pr * stride), np.float32(0.0))
        for side, izs in ((pl, izl), (pr, izr)):
            has = side[run] >= 0
            r = run[has]
            cands.append((ids[has], (base + side * stride)[r], izs[r]))
        pair = (pl >= 0) & (pr >= 0)  # runs with a known pixel on both sides
        if not pair.any():
            continue
        paired[ids[pair[run]]] = True
        k = np.flatnonzero(pair)
        b, pl, pr, il, ir = base[k], pl[k], pr[k], izl[k], izr[k]

        # Each side's surface continued across the gap (inverse depth is linear along a line
        # of the image on a plane), from its 2nd and 5th pixel away from the hole (the 1st may
        # be an anti-aliased mix); no usable slope: a constant.
        line_iz = (pix, b, stride, size)
        pred_r = _continue(line_iz, pl, il, pr, -1)
        pred_l = _continue(line_iz, pr, ir, pl, +1)
        big = np.maximum(il, ir) * np.float32(SAME_SURFACE_TOLERANCE)
        same = (np.abs(pred_r - ir) <= big) & (np.abs(pred_l - il) <= big)
        finite = (il > 0) & (ir > 0)  # sky and invalid depth never make or are seeds
        near_l = finite & ~same & (il > ir * ratio)
        near_r = finite & ~same & (ir > il * ratio)
        both = finite & same
        # Cracks (a surface torn open by at most CRACK pixels): interpolated across, crisp.
        crack = both & (pr - pl - 1 <= CRACK)
        if crack.any():
            crack_run = np.zeros(line.size, bool)  # crack runs (of all runs), then their pixels
            crack_run[k[crack]] = True
            sel = crack_run[run]
            rc = (np.cumsum(pair) - 1)[run[sel]]  # index into the paired runs
            c = pos[sel]
            a = ((c - pl[rc]) / (pr[rc] - pl[rc])).astype(np.float32)[:, None]
            s0, s1 = pix.rgb(b[rc] + pl[rc] * stride), pix.rgb(b[rc] + pr[rc] * stride)
            tgt = ids[sel]
            crack_sum[tgt] += (1 - a) * s0 + a * s1
            crack_n[tgt] += 1
        seeds += [b[near_l] + pl[near_l] * stride, b[near_r] + pr[near_r] * stride]
        bl, br = near_l | both, near_r | both
        backs += [b[bl] + pr[bl] * stride, b[br] + pl[br] * stride]
    # Hole pixels with no such pair (corners and strips revealed at the image border): the
    # candidates of all four directions compared with the farthest finite one, a stricter ratio.
    izfar = np.full(n, np.inf, np.float32)
    for t, _, izq in cands:
        izfar[t] = np.minimum(izfar[t], np.where(izq > 0, izq, np.float32(np.inf)))
    for t, q, izq in cands:
        alone = ~paired[t] & np.isfinite(izfar[t])
        seeds.append(q[alone & (izq > izfar[t] * ratio * ratio)])
    weight = (~hole).astype(np.float32)
    weight_f = weight.reshape(-1)
    seed = np.unique(np.concatenate(seeds)) if seeds else np.zeros(0, np.int64)
    if seed.size:
        # The occluder's own depth: the nearest valid depth around each seed (its rim pixel may
        # hold a mix of object and background depth), spread over `reach` pixels.
        sy, sx = np.divmod(seed, W)
        znear = np.full(sy.size, np.inf, np.float32)
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                q = np.clip(sy + dy, 0, H - 1) * W + np.clip(sx + dx, 0, W - 1)
                np.minimum(znear, pix.z_valid(q), out=znear)
        # _spread_max of the seeds' depths (0 elsewhere), on its cells: only the cells with a
        # seed, and the comparison made in the box of the cells it reaches (zseed is 0 beyond it:
        # no valid depth is <= 0, so nothing there is foreground).
        cell = SPREAD_CELL
        cells = _spread_cells(sy // cell, sx // cell, znear, -(-H // cell), -(-W // cell), reach, cell)
        rows, cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        Y0, Y1, X0, X1 = r0 * cell, min(r1 * cell, H), c0 * cell, min(c1 * cell, W)
        thr = np.repeat(np.repeat(cells[r0:r1, c0:c1], cell, axis=0), cell, axis=1)[: Y1 - Y0, : X1 - X0]
        box = (slice(Y0, Y1), slice(X0, X1))
        zb = np.asarray(depth[box], np.float32)
        fg = ~hole[box] & np.isfinite(zb) & (zb > 0) & (zb <= thr * np.float32(FG_TOLERANCE))
        weight[box][fg] = 0.0
        # The background rim of each hole stays in (e.g. a floor nearer than the occluder, but on
        # the far side of the hole), so that the fill continues what borders the hole there:
        # known pixels, whose weight was 1.
        back = np.unique(np.concatenate(backs)) if backs else np.zeros(0, np.int64)
        weight_f[back[~np.isin(back, seed, assume_unique=True)]] = 1.0
    cracked = crack_n > 0
    vals = np.empty((n, C), np.float32)
    crack_vals = crack_sum[cracked] / crack_n[cracked, None]
    vals[cracked] = crack_vals
    weight_f[at[cracked]] = 1.0  # known from now on
    rest = ~cracked
    if rest.any():
        if not (weight_f > 0).any():
            weight_f[:] = ~hole_f
            weight_f[at[cracked]] = 1.0
        vals[rest] = _push_pull_flat(
            pix.image_rows,
            weight,
            at[rest],
            patch=(at[cracked], crack_vals),
        )
    return vals


class _Pixels:
    """Gathers from one frame at flat pixel indices: image rows, depths and inverse depths.
    image (H, W, C), hole (H * W,) bool, depth (H, W) (larger = farther; inf allowed)."""

    def __init__(self, image: np.ndarray, hole_f: np.ndarray, depth: np.ndarray):
        self.image_rows = _rows(image)
        self.hole = hole_f
        self.z = np.asarray(depth).reshape(-1)

    def rgb(self, q: np.ndarray) -> np.ndarray:
        return self.image_rows[q].astype(np.float32, copy=False)

    def _ok(self, q: np.ndarray):
        z = self.z[q].astype(np.float32, copy=False)
        return z, ~self.hole[q] & np.isfinite(z) & (z > 0)  # finite, valid depths of known pixels

    def iz(self, q: np.ndarray) -> np.ndarray:
        """Inverse depth at q: 1 / z for valid depths of known pixels, else 0 (float32)."""
        z, ok = self._ok(q)
        with np.errstate(divide="ignore"):
            return np.where(ok, np.float32(1.0) / np.where(ok, z, np.float32(1.0)), np.float32(0.0))

    def z_valid(self, q: np.ndarray) -> np.ndarray:
        """Depth at q for valid depths of known pixels, else inf (float32)."""
        z, ok = self._ok(q)
        return np.where(ok, z, np.float32(np.inf))


def _rows(image: np.ndarray) -> np.ndarray:
    """image (H, W, C) as (H * W, C) rows: a view where the layout allows, else a copy."""
    return image.reshape(-1, image.shape[-1])


def hole_runs(at: np.ndarray, H: int, W: int):
    """The runs of hole pixels along the rows and along the columns of an (H, W) frame, from
    `at` (n,) the sorted (row-major) flat indices of its hole pixels: for the rows, then the
    columns, (ids, run, pos, line, first, last): ids (n,) the hole pixels (indices into `at`) in
    line order, run (n,) the run of each of them and pos (n,) its position along its line;
    line, first, last (runs,): each run's line (row or column) and its first and last position
    (inclusive). The nearest known pixels of a run along its line are at first - 1 and
    last + 1 (where inside the line). O(n log n) int64 work, no whole-frame pass."""
    out = []
    n = at.size
    for size in (W, H):
        if not out:  # the rows
            ids, key = np.arange(n), at  # row-major: line * W + position
        else:
            y, x = np.divmod(at, W)
            key = x * H + y  # column-major
            ids = np.argsort(key, kind="stable")
            key = key[ids]
        line, pos = np.divmod(key, size)
        brk = np.flatnonzero((np.diff(key) != 1) | (pos[1:] == 0)) + 1  # where a new run starts
        starts = np.concatenate([np.zeros(min(n, 1), np.int64), brk])
        ends = np.concatenate([brk - 1, np.full(min(n, 1), n - 1, np.int64)])
        step = np.zeros(n, np.int64)
        step[brk] = 1
        out.append((ids, np.cumsum(step), pos, line[starts], pos[starts], pos[ends]))
    return out


def _continue(line_iz, p: np.ndarray, izp: np.ndarray, q: np.ndarray, step: int) -> np.ndarray:
    """Inverse depth at position q of a line predicted from the surface at p: a straight line
    through the pixels p + step and p + 4 * step (`step` points away from the hole), or izp (the
    inverse depth at p) where those are not both in the line and valid (iz > 0). line_iz:
    (pixels (_Pixels), base, stride, n): position t of line i is the flat index base[i] + t *
    stride, n the line length; base, p, izp, q: (m,), one entry per line."""
    pix, base, stride, n = line_iz
    a, b = p + step, p + 4 * step
    inside = (b >= 0) & (b < n)
    za = pix.iz(base + np.clip(a, 0, n - 1) * stride)
    zb = pix.iz(base + np.clip(b, 0, n - 1) * stride)
    ok = inside & (za > 0) & (zb > 0)
    slope = np.where(ok, (za - zb) / np.float32(3.0), np.float32(0.0))  # per pixel toward q
    return np.where(ok, za + slope * np.abs(q - a).astype(np.float32), izp)


SPREAD_CELL = 8


def _spread_cells(cy, cx, values, h: int, w: int, radius: int, cell: int) -> np.ndarray:
    """_spread_max's cell grid (h, w) for an image that is 0 but at the points (cy, cx) (cell
    indices) holding `values` >= 0: the max per cell, dilated by radius / cell cells."""
    m = np.zeros((h, w), np.float32)
    np.maximum.at(m, (cy, cx), values)
    return _dilate_cells(m, radius, cell)


def _dilate_cells(m: np.ndarray, radius: int, cell: int) -> np.ndarray:
    for _ in range(max(1, -(-radius // cell))):
        grown = m.copy()
        np.maximum(grown[1:], m[:-1], out=grown[1:])
        np.maximum(grown[:-1], m[1:], out=grown[:-1])
        m = grown.copy()
        np.maximum(m[:, 1:], grown[:, :-1], out=m[:, 1:])
        np.maximum(m[:, :-1], grown[:, 1:], out=m[:, :-1])
    return m


def _spread_max(a: np.ndarray, radius: int, cell: int = SPREAD_CELL) -> np.ndarray:
    """About the maximum of `a` (H, W) >= 0 within `radius` pixels (a square) of every pixel,
    computed on cells of `cell` x `cell` pixels (max-pooled, dilated by radius / cell cells,
    expanded back): the square reaches between `radius` and `radius + cell` pixels. Cheap."""
    H, W = a.shape
    h, w = -(-H // cell), -(-W // cell)
    pad = np.zeros((h * cell, w * cell), a.dtype)
    pad[:H, :W] = a
    m = _dilate_cells(pad.reshape(h, cell, w, cell).max(axis=(1, 3)), radius, cell)
    return np.repeat(np.repeat(m, cell, axis=0), cell, axis=1)[:H, :W]


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
    return _push_pull_flat(_rows(image), weight, flat, max_levels=max_levels, blend=blend, compiled=compiled)


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


def _push_pull_flat(
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
