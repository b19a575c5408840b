"""Filling the holes splatting leaves (disocclusions, revealed borders, magnification cracks).

Three fillers, one contract: `fill_holes(image (H, W, C) float32 or uint8 in [0, 255], hole (H, W)
bool, depth=None, method=...) -> (H, W, C) uint8`, known pixels unchanged (up to rounding).
- "background" (numpy, needs the depth of the known pixels): `background_fill`, the occluder
  beside each hole (the nearer side, found by scanning four directions) and the near content
  around it are kept out, then a push-pull pyramid over the remaining (background) pixels fills
  the hole smoothly. A disocclusion shows background, not a smear of the object that uncovered
  it; borders revealed by the camera continue the background next to them, without streaks.
- "pushpull" (numpy): a pyramid "pull" averages the known pixels 2x2 level by level until a
  level has no hole; "push" walks back down, replacing every hole pixel by the bilinearly
  upsampled coarser level. O(H*W), any hole size, smooth (blurry) fill; no loop over pixels.
- "telea": OpenCV's fast-marching inpainting (cv2.inpaint, INPAINT_TELEA). Ignores depth, so it
  smears foreground into disocclusions (tests/backend/test_fill.py shows it).
"auto": "background" when a depth is given, else "telea" when OpenCV imports, else "pushpull".
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
    resolve_method. radius: Telea's neighbourhood in pixels."""
    if image.shape[:2] != hole.shape:
        raise ValueError(f"image {image.shape} and hole {hole.shape} sizes differ")
    method = resolve_method(method, depth is not None)
    u8 = image if image.dtype == np.uint8 else np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if not hole.any():
        return u8
    if hole.all():  # nothing to fill from
        return np.zeros_like(u8)
    if method == "telea":
        import cv2

        return cv2.inpaint(np.ascontiguousarray(u8), hole.astype(np.uint8), radius, cv2.INPAINT_TELEA)
    if method == "background":
        filled = background_fill(image, hole, depth, power=far_preference)
    else:
        filled = push_pull(image.astype(np.float32), (~hole).astype(np.float32))
    out = u8.copy()
    out[hole] = np.clip(np.rint(filled[hole]), 0, 255).astype(np.uint8)
    return out


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
    known ones unchanged. depth: (H, W) of the known pixels; inf = at infinity (sky).

    1. Which side of a hole is the occluder. For every hole pixel the nearest known pixel is
       found in each of the four directions (running maxima of indices, no per-pixel loop).
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
    H, W = hole.shape
    z = np.asarray(depth, np.float32)
    known = ~hole
    ok_z = known & np.isfinite(z) & (z > 0)  # finite, valid depths of known pixels
    with np.errstate(divide="ignore"):
        iz = np.where(ok_z, np.float32(1.0) / np.where(ok_z, z, np.float32(1.0)), np.float32(0.0))
    ratio = np.float32(FG_RATIO ** (FAR_POWER / max(power, 1e-6)))
    seed = np.zeros((H, W), bool)  # occluders beside a hole
    back = np.zeros((H, W), bool)  # confirmed background beside a hole
    paired = np.zeros(H * W, bool)  # hole pixels with known pixels on both sides along an axis
    img = image.astype(np.float32).reshape(H * W, -1)  # always a copy
    crack_sum = np.zeros_like(img)
    crack_n = np.zeros(H * W, np.float32)
    cands = []  # (hole pixel, candidate) flat indices, one pair of arrays per direction
    for axis in (1, 0):  # rows with holes, scanned left and right; then columns, up and down
        lines = np.flatnonzero(hole.any(axis=axis))
        if lines.size == 0:
            continue
        sub = hole[lines] if axis == 1 else hole[:, lines].T  # (lines, positions)
        izl = iz[lines] if axis == 1 else iz[:, lines].T
        (_, lo), (_, hi) = _nearest_known(~sub)
        for src in (lo, hi):
            r, c = np.nonzero(sub & (src >= 0))
            if axis == 1:
                cands.append((lines[r] * W + c, lines[r] * W + src[r, c]))
            else:
                cands.append((c * W + lines[r], src[r, c] * W + lines[r]))
        r, c = np.nonzero(sub & (lo >= 0) & (hi >= 0))  # hole pixels with a known pixel on both sides
        if r.size == 0:
            continue
        paired[lines[r] * W + c if axis == 1 else c * W + lines[r]] = True
        pl, pr = lo[r, c], hi[r, c]
        il, ir = izl[r, pl], izl[r, pr]
        # Each side's surface continued across the gap (inverse depth is linear along a line
        # of the image on a plane), from its 2nd and 5th pixel away from the hole (the 1st may
        # be an anti-aliased mix); no usable slope: a constant.
        pred_r = _continue(izl, r, pl, pr, -1)
        pred_l = _continue(izl, r, pr, pl, +1)
        big = np.maximum(il, ir) * np.float32(SAME_SURFACE_TOLERANCE)
        same = (np.abs(pred_r - ir) <= big) & (np.abs(pred_l - il) <= big)
        finite = (il > 0) & (ir > 0)  # sky and invalid depth never make or are seeds
        near_l = finite & ~same & (il > ir * ratio)
        near_r = finite & ~same & (ir > il * ratio)
        both = finite & same
        # Cracks (a surface torn open by at most CRACK pixels): interpolated across, crisp.
        crack = both & (pr - pl - 1 <= CRACK)
        if crack.any():
            a = ((c - pl) / (pr - pl)).astype(np.float32)[crack, None]
            if axis == 1:
                tgt, s0, s1 = lines[r] * W + c, lines[r] * W + pl, lines[r] * W + pr
            else:
                tgt, s0, s1 = c * W + lines[r], pl * W + lines[r], pr * W + lines[r]
            tgt, s0, s1 = tgt[crack], s0[crack], s1[crack]
            crack_sum[tgt] += (1 - a) * img[s0] + a * img[s1]
            crack_n[tgt] += 1
        for mark, sel, pos in (
            (seed, near_l, pl),
            (seed, near_r, pr),
            (back, near_l | both, pr),
            (back, near_r | both, pl),
        ):
            if axis == 1:
                mark[lines[r[sel]], pos[sel]] = True
            else:
                mark[pos[sel], lines[r[sel]]] = True
    # Hole pixels with no such pair (corners and strips revealed at the image border): the
    # candidates of all four directions compared with the farthest finite one, a stricter ratio.
    izfar = np.full(H * W, np.inf, np.float32)
    iz_flat = iz.reshape(-1)
    for t, q in cands:
        izq = iz_flat[q]
        izfar[t] = np.minimum(izfar[t], np.where(izq > 0, izq, np.float32(np.inf)))
    seed_f = seed.reshape(-1)  # (a view) no background is confirmed this way: one side only
    for t, q in cands:
        alone = ~paired[t] & np.isfinite(izfar[t])
        seed_f[q[alone & (iz_flat[q] > izfar[t] * ratio * ratio)]] = True
    weight = known.astype(np.float32)
    if seed.any():
        # The occluder's own depth: the nearest valid depth around each seed (its rim pixel may
        # hold a mix of object and background depth), spread over `reach` pixels.
        sy, sx = np.nonzero(seed)
        znear = np.full(sy.size, np.inf, np.float32)
        zv = np.where(ok_z, z, np.float32(np.inf))
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                np.minimum(znear, zv[np.clip(sy + dy, 0, H - 1), np.clip(sx + dx, 0, W - 1)], out=znear)
        zseed = np.zeros((H, W), np.float32)
        zseed[sy, sx] = znear
        zseed = _spread_max(zseed, reach)
        fg = ok_z & (z <= zseed * np.float32(FG_TOLERANCE))
        # The background rim of each hole stays in (e.g. a floor nearer than the occluder, but on
        # the far side of the hole), so that the fill continues what borders the hole there.
        weight[fg & ~(back & ~seed)] = 0.0
    cracked = crack_n > 0
    img[cracked] = crack_sum[cracked] / crack_n[cracked, None]
    cracked = cracked.reshape(H, W)
    weight[cracked] = 1.0  # known from now on
    rest = hole & ~cracked
    out = img.reshape(image.shape)
    if rest.any():
        if not (weight > 0).any():
            weight = (known | cracked).astype(np.float32)
        out[rest] = push_pull(out, weight, at=rest)
    return out


def _continue(iz: np.ndarray, r: np.ndarray, p: np.ndarray, q: np.ndarray, step: int) -> np.ndarray:
    """Inverse depth at position q of line r predicted from the surface at p: a straight line
    through the pixels p + step and p + 4 * step (`step` points away from the hole), or iz[r, p]
    where those are not both in the line and valid (iz > 0). iz: (lines, n); r, p, q: (m,)."""
    n = iz.shape[1]
    a, b = p + step, p + 4 * step
    inside = (b >= 0) & (b < n)
    a_, b_ = np.clip(a, 0, n - 1), np.clip(b, 0, n - 1)
    za, zb = iz[r, a_], iz[r, b_]
    ok = inside & (za > 0) & (zb > 0)
    slope = np.where(ok, (za - zb) / np.float32(3.0), np.float32(0.0))  # per pixel toward q
    return np.where(ok, za + slope * np.abs(q - a).astype(np.float32), iz[r, p])


def _spread_max(a: np.ndarray, radius: int, cell: int = 8) -> np.ndarray:
    """About the maximum of `a` (H, W) >= 0 within `radius` pixels (a square) of every pixel,
    computed on cells of `cell` x `cell` pixels (max-pooled, dilated by radius / cell cells,
    expanded back): the square reaches between `radius` and `radius + cell` pixels. Cheap."""
    H, W = a.shape
    h, w = -(-H // cell), -(-W // cell)
    pad = np.zeros((h * cell, w * cell), a.dtype)
    pad[:H, :W] = a
    m = pad.reshape(h, cell, w, cell).max(axis=(1, 3))
    for _ in range(max(1, -(-radius // cell))):
        grown = m.copy()
        np.maximum(grown[1:], m[:-1], out=grown[1:])
        np.maximum(grown[:-1], m[1:], out=grown[:-1])
        m = grown.copy()
        np.maximum(m[:, 1:], grown[:, :-1], out=m[:, 1:])
        np.maximum(m[:, :-1], grown[:, 1:], out=m[:, :-1])
    return np.repeat(np.repeat(m, cell, axis=0), cell, axis=1)[:H, :W]


def _nearest_known(known: np.ndarray):
    """For each row of `known` (n, w) bool: the column of the nearest known pixel to the left and
    to the right of every position (-1 when there is none), as two (n, w) int32 arrays (running
    maxima of indices: no per-pixel loop). Yields ("left", cols) and ("right", cols)."""
    w = known.shape[1]
    cols = np.arange(w, dtype=np.int32)
    yield "left", np.maximum.accumulate(np.where(known, cols, -1), axis=1)
    rev = np.maximum.accumulate(np.where(known[:, ::-1], cols, -1), axis=1)[:, ::-1]
    yield "right", np.where(rev >= 0, w - 1 - rev, -1).astype(np.int32)


def push_pull(
    image: np.ndarray, weight: np.ndarray, *, max_levels: int = 16, at: np.ndarray | None = None
) -> np.ndarray:
    """Pyramid fill. image (H, W, C) float32, weight (H, W) float32 in [0, 1] (0 = unknown).
    Returns (H, W, C) float32 where weight-1 pixels keep their value and the rest blend in the
    coarser levels: out = w * image + (1 - w) * upsample(coarser). at: (H, W) bool, or None:
    then only out[at] is returned, (n, C), and the full-size upsampling is skipped (the cost of
    the finest level is then that of the pull and of the n pixels)."""
    w = np.clip(weight, 0.0, 1.0).astype(np.float32)
    if w.min() >= 1.0 or max_levels <= 0 or min(image.shape[:2]) <= 1:
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
