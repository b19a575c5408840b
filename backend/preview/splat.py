"""Forward (softmax) splatting of one image along a flow, with depth order: nearer content wins.

Convention: the image origin is the top-left corner and pixel (row i, column j) has its centre at
(x, y) = (j + 0.5, i + 0.5). flow[i, j] = (dx, dy) in pixels moves that centre to
(j + 0.5 + dx, i + 0.5 + dy) in the target; its colour is shared bilinearly among the four target
pixel centres around that point.

Depth order (softmax splatting, Niklaus & Liu 2020, with a scale-free importance): a source pixel
at depth z (in the TARGET camera, scene units) is weighted by (z / z_min) ** -sharpness, z_min being
the nearest valid depth. With the default sharpness 30, a surface 10 % farther gets ~6 % of the
weight of the nearer one and a surface twice as far ~1e-9: nearer content wins, while pixels of one
smooth surface still blend (no z-fighting speckle). Every target pixel is a weighted mean of the
sources that land on it; `coverage` is the sum of their bilinear weights alone (about 1 for plain
motion, 1/m^2 under an m-times magnification, 0 in holes).

float32 throughout: the importance is e^IMPORTANCE_TOP at z_min and clamped at e^-IMPORTANCE_FLOOR
(both far from float32's limits, so sums neither overflow nor underflow): depth order is exact up
to exp((TOP + FLOOR) / sharpness) = ~120x the nearest depth (sharpness 30); content farther than
that (and +inf, "far away") shares the floor weight and blends. Against the float64 splatting it
replaces (kept in benchmarks/preview_baseline/) colours differ by float32 rounding only
(tests/backend/test_splat.py: below 0.02 of 255 where depth ratios stay under that range).

Two implementations of the same arithmetic: where numba is installed, splat_kernel compiles it
(a few passes over the sources, no per-sample arrays, the GIL released: ~2x the numpy path on one
thread, and frame threads run side by side); else numpy: the four corner contributions of all H*W
sources, and of the footprint samples of magnified sources (footprint.py), become one (M, 4)
index array, and ONE sparse matrix product (scipy, where present) or one np.bincount per
quantity (numpy only) sums colours, weights, depths and coverage per target pixel. They differ
by float32 rounding (summation order; tests/backend/test_splat.py).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from .footprint import (
    FOOTPRINT_MAX_GAP,
    FOOTPRINT_SPACING,
    FOOTPRINT_TAPER,
    MAX_FOOTPRINT,
    footprint_samples,
)

DEPTH_SHARPNESS = 30.0
# Targets whose summed bilinear weight is below this are holes (left for the filler).
MIN_COVERAGE = 0.05
# float32 importance (natural-log units): e^TOP at the nearest depth, never below e^-FLOOR. With
# colours <= 255, depth ratios <= DEPTH_RATIO_CAP and up to ~1e3 sources per target the sums stay
# below 1e36 (float32 max 3.4e38) and the smallest weight above the normal range (1.2e-38).
IMPORTANCE_TOP = 60.0
IMPORTANCE_FLOOR = 84.0
DEPTH_RATIO_CAP = 1e5
_F32 = np.float32


@dataclass
class Splat:
    """image: (H, W, C) float32 in the input's value range (0 in holes). coverage: (H, W) float32
    summed bilinear weight. depth: (H, W) float32 weighted target depth (inf in holes and where
    the sources are at infinity, e.g. sky), or None when no depth was given. hole: (H, W) bool,
    coverage < min_coverage."""

    image: np.ndarray
    coverage: np.ndarray
    depth: np.ndarray | None
    hole: np.ndarray


@functools.lru_cache(maxsize=4)
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and row index of every pixel, flattened (N,) float32 (read-only, cached)."""
    cols = np.tile(np.arange(W, dtype=np.float32), H)
    rows = np.repeat(np.arange(H, dtype=np.float32), W)
    cols.flags.writeable = False
    rows.flags.writeable = False
    return cols, rows


def _corners(xs, ys, weight, W: int, H: int, idx_out: np.ndarray, w_out: np.ndarray) -> None:
    """Bilinear corners of samples at continuous index positions (xs, ys) (M,) float32 with
    weights (M,) float32, written into idx_out (M, 4) int32 canvas indices and w_out (M, 4)
    float32 (sample-major: one sparse column per sample). The canvas is the image with a 1-pixel
    ring left/top and 2 right/bottom, (H+3, W+3): positions are clamped into [-1, W + 0.5] x
    [-1, H + 0.5], so all four corners fall inside it and whatever lands outside the image falls
    on the ring, cropped away later. No bounds tests. xs and ys are overwritten (they become the
    fractional parts): the arithmetic runs in place, two (M,) temporaries in all."""
    CW = W + 3
    np.clip(xs, -1.0, W + 0.5, out=xs)
    np.clip(ys, -1.0, H + 0.5, out=ys)
    x0 = np.floor(xs)
    y0 = np.floor(ys)
    # int32 indices: what the sparse product wants (the canvas is far below 2**31 pixels).
    base = idx_out[:, 0]
    base[...] = y0  # floors >= -1: the cast truncates exactly
    base += 1
    base *= np.int32(CW)
    np.add(base, x0, out=base, casting="unsafe")  # exact: integers below 2**31
    base += 1
    np.add(base, np.int32(1), out=idx_out[:, 1])
    np.add(base, np.int32(CW), out=idx_out[:, 2])
    np.add(base, np.int32(CW + 1), out=idx_out[:, 3])
    np.subtract(xs, x0, out=xs)  # ax
    np.subtract(ys, y0, out=ys)  # ay
    wy1 = np.multiply(ys, weight, out=ys)
    wy0 = np.subtract(weight, wy1, out=x0)
    np.multiply(xs, wy0, out=w_out[:, 1])
    np.subtract(wy0, w_out[:, 1], out=w_out[:, 0])
    np.multiply(xs, wy1, out=w_out[:, 3])
    np.subtract(wy1, w_out[:, 3], out=w_out[:, 2])


def _accumulate(idx: np.ndarray, weights: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """sums[t, k] = sum over samples s and corners c with idx[s, c] == t of weights[s, c] * values[s, k].
    idx: (M, 4) int32; weights: (M, 4) float32; values: (M, K) float32. Returns (size, K) float32.

    With scipy: one sparse (size x M) CSC matrix whose column s holds the four corners of sample
    s (no sorting needed) times the dense values, a single pass for all K columns.
    Without: one np.bincount per column."""
    try:
        import scipy.sparse as sparse
    except ImportError:
        sparse = None
    M = idx.shape[0]
    if sparse is not None and size < 2**31 and 4 * M < 2**31:
        A = sparse.csc_matrix(
            (weights.reshape(-1), idx.reshape(-1), np.arange(0, 4 * M + 1, 4, dtype=np.int32)),
            shape=(size, M),
        )
        return np.asarray(A @ values)
    flat = idx.reshape(-1)
    out = np.empty((size, values.shape[1]), np.float32)
    tmp = np.empty(weights.shape, np.float32)
    for k in range(values.shape[1]):
        np.multiply(weights, values[:, k : k + 1], out=tmp)
        out[:, k] = np.bincount(flat, tmp.reshape(-1), minlength=size)
    return out


def depth_weights(depth: np.ndarray, valid: np.ndarray, sharpness: float = DEPTH_SHARPNESS):
    """Per-source importance (N,) float32 and z_min: e^IMPORTANCE_TOP * (z / z_min) ** -sharpness
    for valid z > 0 (+inf, "far away", included), clamped at e^-IMPORTANCE_FLOOR, else 0 (see
    the module docstring). z_min: the nearest finite valid depth (1.0 when there is none)."""
    z = np.asarray(depth, np.float32)
    ok = valid & (z > 0)  # NaN compares False; +inf (far, no depth) stays valid
    finite = ok & np.isfinite(z)
    if not ok.any():
        return np.zeros(z.shape, np.float32), 1.0
    zmin = float(z[finite].min()) if finite.any() else 1.0
    w = np.where(ok, z, _F32(zmin))
    w *= _F32(1.0 / zmin)
    with np.errstate(over="ignore", invalid="ignore"):
        np.log(w, out=w)
    span = (IMPORTANCE_TOP + IMPORTANCE_FLOOR) / max(sharpness, 1e-6)
    np.minimum(w, _F32(span), out=w)  # inf (far away) included
    w *= _F32(-sharpness)
    w += _F32(IMPORTANCE_TOP)
    np.exp(w, out=w)
    w[~ok] = 0.0
    return w, zmin


def forward_splat(
    image: np.ndarray,
    flow: np.ndarray,
    depth: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    *,
    sharpness: float = DEPTH_SHARPNESS,
    min_coverage: float = MIN_COVERAGE,
    want_depth: bool = False,
    max_footprint: int = MAX_FOOTPRINT,
    compiled: bool | None = None,
) -> Splat:
    """Splat `image` (H, W, C) (uint8 or float) along `flow` (H, W, 2) float pixels.

    depth: (H, W) depth of each SOURCE pixel as seen from the target camera (scene units, > 0), or
        None to average without depth order. valid: (H, W) bool, sources to use (e.g. not behind the
        camera); None means all with finite flow. want_depth: also return the splatted depth.
    max_footprint: largest footprint (samples per axis) for magnified sources; 1 disables it.
    compiled: the numba kernel (splat_kernel) when True, the numpy path when False, None: the
        kernel where numba is installed (numpy for a sharpness below 1). Returns a Splat (see
        there); sources landing outside the image are dropped."""
    H, W = flow.shape[:2]
    if image.shape[:2] != (H, W) or flow.shape != (H, W, 2):
        raise ValueError(f"image {image.shape} and flow {flow.shape} must be (H, W, C) and (H, W, 2)")
    if depth is not None and depth.shape != (H, W):
        raise ValueError(f"depth must be ({H}, {W}), got {depth.shape}")
    kernel = None if compiled is False else compiled_kernel()
    if compiled and kernel is None:
        raise RuntimeError("the compiled splatting needs numba: pip install numba")
    flow32 = np.asarray(flow, np.float32)
    if kernel is not None and sharpness >= 1.0:
        return _splat_compiled(
            kernel, image, flow32, valid, depth, sharpness, min_coverage, want_depth, max_footprint
        )
    N = H * W
    img = image.reshape(N, -1)
    C = img.shape[1]
    ok = np.isfinite(flow32[..., 0]).reshape(N)
    ok &= np.isfinite(flow32[..., 1]).reshape(N)
    if valid is not None:
        ok &= valid.reshape(N)
    z = None if depth is None else depth.reshape(N)
    if z is None:
        imp, zmin = np.ones(N, np.float32), 1.0
    else:
        imp, zmin = depth_weights(z, ok, sharpness)
    ratio, far = (None, 1.0) if z is None or not want_depth else _depth_ratio(z, zmin)
    K = C + 2 + int(ratio is not None)
    cols, rows = _grid(H, W)
    # Continuous target position in index units (the pixel-centre offsets cancel out).
    xs = np.add(cols, flow32[..., 0].reshape(N))
    ys = np.add(rows, flow32[..., 1].reshape(N))
    if not ok.all():  # keep NaN out of the index arithmetic
        xs[~ok] = -1.0
        ys[~ok] = -1.0
    extra = None
    if max_footprint > 1:
        extra = footprint_samples(xs.reshape(H, W), ys.reshape(H, W), ok.reshape(H, W), max_footprint)
    E = 0 if extra is None else extra[0].size
    M = N + E  # one sample per source, then the footprint samples of the magnified ones

    # Per-sample values to accumulate, one column each: importance-weighted channels, the
    # importance, the importance-weighted depth ratio (optional), and 1 (coverage).
    values = np.empty((M, K), np.float32)
    for c in range(C):  # column by column: faster than one broadcast into a strided view
        np.multiply(img[:, c], imp, out=values[:N, c])
    values[:N, C] = imp
    if ratio is not None:
        np.multiply(imp, ratio, out=values[:N, C + 1])
    values[:N, -1] = 1.0
    idx = np.empty((M, 4), np.int32)
    wb = np.empty((M, 4), np.float32)
    src_w = ok.astype(np.float32)  # per-sample weight: validity (the footprints' own below)
    if extra is not None:
        ex, ey, ew, eidx, replaced = extra
        src_w[replaced] = 0.0  # replaced by their footprint samples
        np.take(values[:N], eidx, axis=0, out=values[N:])
        _corners(ex, ey, ew, W, H, idx[N:], wb[N:])
    _corners(xs, ys, src_w, W, H, idx[:N], wb[:N])
    CW, CH = W + 3, H + 3
    sums = _accumulate(idx, wb, values, CH * CW)
    del idx, wb, values
    sums = sums.reshape(CH, CW, K)[1 : H + 1, 1 : W + 1]  # a view: no copy of the canvas
    coverage = sums[..., -1]
    den = sums[..., C]
    hole = coverage < min_coverage
    hole |= den <= 0
    inv = np.where(hole, _F32(1.0), den)
    np.divide(_F32(1.0), inv, out=inv)
    out = np.empty((H, W, C), np.float32)
    for c in range(C):
        np.multiply(sums[..., c], inv, out=out[..., c])
    out[hole] = 0.0
    zout = None
    if ratio is not None:
        zout = np.multiply(sums[..., C + 1], inv)
        # Mostly sources at infinity (sky): the stand-in `far` dominates the mean. Report inf, so
        # that the filler can tell "no depth, farthest" from a finite surface.
        zout[hole | (zout >= _F32(0.5 * far))] = np.inf
        zout *= _F32(zmin)
    return Splat(out, np.ascontiguousarray(coverage), zout, hole)


def _depth_ratio(z: np.ndarray, zmin: float) -> tuple[np.ndarray, float]:
    """Each source's depth over z_min (N,) float32, capped at DEPTH_RATIO_CAP, and `far`, the
    stand-in ratio of sources at infinity or without a depth (10x the largest finite ratio)."""
    finite = np.isfinite(z) & (z > 0)
    ratio = np.where(finite, z, _F32(zmin)).astype(np.float32, copy=False)
    ratio *= _F32(1.0 / zmin)
    np.minimum(ratio, _F32(DEPTH_RATIO_CAP), out=ratio)
    far = 10.0 * float(ratio[finite].max()) if finite.any() else 1.0
    ratio[~finite] = far
    return ratio, far


def compiled_kernel():
    """backend.preview.splat_kernel, ready (backend.compiled.load: built, or loaded from numba's
    cache, on a tiny splat), or None: numba is not installed or the kernel does not build."""
    from ..compiled import load

    return load("backend.preview.splat_kernel", _smoke_test)


def _smoke_test(kernel) -> None:
    """A 2x2 splat with depth through the kernel: compiles (or loads) every function it uses."""
    z = np.ones((2, 2), np.float32)
    image, flow = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 2), np.float32)
    _splat_compiled(kernel, image, flow, None, z, DEPTH_SHARPNESS, MIN_COVERAGE, True, MAX_FOOTPRINT)


def _splat_compiled(kernel, image, flow, valid, depth, sharpness, min_coverage, want_depth, max_k) -> Splat:
    """forward_splat through splat_kernel (flow (H, W, 2) float32; the rest as given to
    forward_splat)."""
    H, W = flow.shape[:2]
    img = np.ascontiguousarray(image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32))
    img = img.reshape(H, W, -1)
    C = img.shape[2]
    ok = np.empty((H, W), bool)
    has_valid = valid is not None
    valid = np.ascontiguousarray(valid, bool) if has_valid else ok
    px, py, gu, gv = np.empty((4, H, W), np.float32)
    kernel.prepare(np.ascontiguousarray(flow), valid, has_valid, ok, px, py, gu, gv)
    has_depth = depth is not None
    z = np.ascontiguousarray(depth, np.float32) if has_depth else np.ones((1, 1), np.float32)
    zmin, far = kernel.depth_range(z, ok, _F32(DEPTH_RATIO_CAP)) if has_depth else (1.0, 1.0)
    with_depth = has_depth and want_depth
    params = np.array(
        [
            has_depth,
            with_depth,
            zmin,
            far,
            DEPTH_RATIO_CAP,
            IMPORTANCE_TOP,
            IMPORTANCE_FLOOR,
            sharpness,
            max_k,
            FOOTPRINT_SPACING**2,
            FOOTPRINT_MAX_GAP**2,
            FOOTPRINT_TAPER**2,
            FOOTPRINT_SPACING,
        ],
        np.float32,
    )
    sums = _canvas(H, W, C + 2 + with_depth)
    kernel.splat(ok, px, py, gu, gv, img, z, params, sums)
    out = np.empty((H, W, C), np.float32)
    coverage = np.empty((H, W), np.float32)
    hole = np.empty((H, W), bool)
    zout = np.empty((H, W), np.float32) if with_depth else px
    kernel.finish(sums, C, with_depth, _F32(min_coverage), _F32(far), _F32(zmin), out, coverage, zout, hole)
    _give_back(sums)
    return Splat(out, coverage, zout if with_depth else None, hole)


_CANVASES = threading.local()  # per frame thread: {(H, W, K): canvas}, zeroed between frames


def _canvas(H: int, W: int, K: int) -> np.ndarray:
    """This thread's zeroed (H + 3, W + 3, K) float32 canvas, taken out of its cache (a fresh one
    when there is none): the kernel's finish leaves it zeroed and _give_back returns it, so a
    canvas that is not given back (an error in between) is dropped, never reused dirty. Saves a
    memory pass a frame (22 MB at 1280 x 720; the kernel is bound by memory traffic)."""
    cache = _CANVASES.__dict__.setdefault("free", {})
    canvas = cache.pop((H, W, K), None)
    return np.zeros((H + 3, W + 3, K), np.float32) if canvas is None else canvas


def _give_back(canvas: np.ndarray) -> None:
    H, W, K = canvas.shape[0] - 3, canvas.shape[1] - 3, canvas.shape[2]
    _CANVASES.__dict__.setdefault("free", {})[(H, W, K)] = canvas
