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

The push-pull lives in backend/preview/pushpull.py (numpy, and numba where installed).
"""

from __future__ import annotations

import numpy as np

from . import pushpull
from .pushpull import flat_rows, push_pull_flat

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
        filled = push_pull_flat(flat_rows(image), (~hole).astype(np.float32), at, blend="full")
    out = u8.copy() if u8 is image else u8  # a fresh conversion is ours to write into
    out.reshape(-1, out.shape[-1])[at] = _to_u8(filled)
    return out


def _to_u8(a: np.ndarray) -> np.ndarray:
    """np.clip(np.rint(a), 0, 255).astype(np.uint8) for a float array: one pass through
    fill_kernel.to_u8 where numba is installed, else numpy with one temporary."""
    kernel = pushpull.compiled_kernel() if a.dtype in (np.float32, np.float64) else None
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
        vals[rest] = push_pull_flat(
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
        self.image_rows = flat_rows(image)
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
