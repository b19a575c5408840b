"""Forward splatting: exact on simple motions, nearer content wins, magnified surfaces stay closed."""

from __future__ import annotations

import numpy as np
import pytest

from backend.preview import splat
from backend.preview.footprint import footprint_samples
from backend.preview.splat import forward_splat
from tests.backend.jobs import texture

H, W = 24, 32
HAVE_NUMBA = splat.compiled_kernel() is not None


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def engine(request, monkeypatch):
    """Every test runs on both implementations: numpy (compiled_kernel() None) and the numba
    kernel (splat_kernel; skipped where numba is not installed)."""
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    if request.param == "numpy":
        monkeypatch.setattr(splat, "compiled_kernel", lambda: None)
    return request.param


def _const_flow(dx, dy):
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_zero_flow_is_the_identity():
    img = texture(H, W)
    s = forward_splat(img, _const_flow(0, 0), np.full((H, W), 5.0, np.float32))
    np.testing.assert_allclose(s.image, img, atol=1e-3)
    assert not s.hole.any()
    np.testing.assert_allclose(s.coverage, 1.0)


def test_integer_shift_moves_pixels_and_leaves_a_hole():
    img = texture(H, W)
    s = forward_splat(img, _const_flow(3, -2), None)
    # target (y, x) = source (y + 2, x - 3)
    np.testing.assert_allclose(s.image[: H - 2, 3:], img[2:, : W - 3], atol=1e-3)
    assert s.hole[:, :3].all() and s.hole[H - 2 :, :].all()
    assert not s.hole[: H - 2, 3:].any()


def test_half_pixel_shift_is_bilinear():
    img = np.zeros((H, W, 1), np.float32)
    img[10, 10] = 100.0
    s = forward_splat(img, _const_flow(0.5, 0), None)
    # One source shares itself between x = 10 and 11; each target averages its contributors.
    assert s.image[10, 10, 0] == np.float32(50.0) and s.image[10, 11, 0] == np.float32(50.0)
    np.testing.assert_allclose(s.coverage[10, 1:-1], 1.0)


def _square_scene(near_depth, far_depth):
    """A 8x8 square at x 4..12 moving +10 px over a static background."""
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = (0, 0, 255)  # blue background
    img[8:16, 4:12] = (255, 0, 0)  # red square
    flow = np.zeros((H, W, 2), np.float32)
    flow[8:16, 4:12, 0] = 10.0
    depth = np.full((H, W), far_depth, np.float32)
    depth[8:16, 4:12] = near_depth
    return img, flow, depth


def test_nearer_content_wins_whatever_the_order():
    img, flow, depth = _square_scene(near_depth=2.0, far_depth=10.0)
    s = forward_splat(img, flow, depth)
    landed = s.image[9:15, 15:21]  # the square's new place, over static background pixels
    assert (landed[..., 0] > 254).all() and (landed[..., 2] < 1).all()
    # Swap the depths: the square is now BEHIND the background and is hidden where both land.
    s2 = forward_splat(img, flow, np.where(depth == 2.0, 10.0, 2.0).astype(np.float32))
    landed2 = s2.image[9:15, 15:21]
    assert (landed2[..., 2] > 254).all() and (landed2[..., 0] < 1).all()
    # Where the square came from nothing is left: a hole for the filler.
    assert s.hole[8:16, 4:12].all() and not s.hole[:, 12:14].any()


def test_infinite_depth_is_far_not_dropped():
    img, flow, depth = _square_scene(near_depth=3.0, far_depth=np.inf)
    s = forward_splat(img, flow, depth)
    assert not s.hole[:, 16:].any()  # background at infinity still covers the image
    assert (s.image[9:15, 15:21, 0] > 254).all()  # and the finite square is in front of it


def test_invalid_sources_are_dropped():
    img = texture(H, W)
    valid = np.ones((H, W), bool)
    valid[:, :10] = False  # e.g. behind the camera
    s = forward_splat(img, _const_flow(0, 0), np.ones((H, W), np.float32), valid)
    assert s.hole[:, :10].all() and not s.hole[:, 10:].any()


def test_magnification_is_closed_by_footprints():
    """A 3x zoom about the centre: plain bilinear splatting cracks, footprints do not."""
    img = texture(H, W)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    flow = np.stack([(x - cx) * 2.0, (y - cy) * 2.0], -1).astype(np.float32)
    depth = np.ones((H, W), np.float32)
    cracked = forward_splat(img, flow, depth, max_footprint=1)
    closed = forward_splat(img, flow, depth)
    assert cracked.hole.mean() > 0.3
    assert not closed.hole.any()
    # The centre pixel's colour ends up around the centre.
    c = closed.image[H // 2 - 1 : H // 2 + 1, W // 2 - 1 : W // 2 + 1].mean(axis=(0, 1))
    assert np.abs(c - img[H // 2 - 1 : H // 2 + 1, W // 2 - 1 : W // 2 + 1].mean(axis=(0, 1))).max() < 40


def test_depth_edges_are_not_stretched():
    """Two halves moving apart: the gap between them stays a hole (no rubber sheet)."""
    img = texture(H, W)
    flow = np.zeros((H, W, 2), np.float32)
    flow[:, W // 2 :, 0] = 6.0
    s = forward_splat(img, flow, np.ones((H, W), np.float32))
    assert s.hole[:, W // 2 + 1 : W // 2 + 5].all()


def test_sources_at_infinity_report_infinite_depth():
    """Sky (inf) splatted alone reads as inf, not as the finite stand-in used for the mean, so the
    hole filler can tell "no depth" from a far surface; a finite square stays finite."""
    img = texture(H, W)
    depth = np.full((H, W), np.inf, np.float32)
    depth[8:16, 4:12] = 3.0
    s = forward_splat(img, _const_flow(0, 0), depth, want_depth=True)
    assert np.isinf(s.depth[:, 16:]).all() and np.isinf(s.depth[:4]).all()
    np.testing.assert_allclose(s.depth[9:15, 5:11], 3.0, rtol=1e-5)


def test_unevenly_magnified_surface_stays_closed():
    """A surface turning toward the camera: along a row its texels land farther and farther apart
    (each gap 1.5x the previous, up to 11 px). Each footprint reaches half way to both
    neighbours, so no crack opens between a texel and its larger successor (footprints mirroring
    only their nearer side left cracks there)."""
    w = 48
    img = texture(H, w)
    x = np.arange(w, dtype=np.float32)
    c0 = 8
    target = np.where(x <= c0, x, c0 + (1.5 ** (x - c0) - 1) / 0.5)
    flow = np.zeros((H, w, 2), np.float32)
    flow[..., 0] = (target - x)[None, :]
    s = forward_splat(img, flow, np.ones((H, w), np.float32))
    last = int(target[target < w - 1].max())  # the last texel that lands inside
    assert last >= 40
    assert not s.hole[2 : H - 2, : last + 1].any()


def test_float32_single_product_matches_the_float64_baseline():
    """The splatting (float32, one sparse product for base and footprint samples, corners in
    place) equals the float64 implementation it replaced (benchmarks/preview_baseline/splat.py)
    up to float32 rounding: same holes, colours within 0.02 of 255, depth within 1e-5 relative,
    on a dolly with parallax, magnification (footprints), sky and invalid sources."""
    from backend.preview import splat
    from benchmarks.preview_baseline import splat as baseline

    H, W = 96, 128
    rng = np.random.default_rng(4)
    img = texture(H, W)
    depth = np.full((H, W), 8.0, np.float32)
    depth[20:70, 30:90] = 2.0 + rng.random((50, 60)).astype(np.float32)  # a near, bumpy object
    depth[:12] = np.inf  # sky
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    cx, cy = W / 2, H / 2
    mag = 1.0 + 1.8 / depth  # a dolly: near content magnified (footprints), sky not
    flow = np.stack([(xs - cx) * (mag - 1), (ys - cy) * (mag - 1) + 1.5], -1).astype(np.float32)
    valid = rng.random((H, W)) > 0.01
    assert footprint_samples(xs + flow[..., 0], ys + flow[..., 1], valid, 8) is not None
    new = splat.forward_splat(img, flow, depth, valid, want_depth=True)
    old = baseline.forward_splat(img, flow, depth, valid, want_depth=True)
    np.testing.assert_array_equal(new.hole, old.hole)
    known = ~new.hole
    assert np.abs(new.image - old.image)[known].max() < 0.02
    np.testing.assert_allclose(new.coverage, old.coverage, atol=1e-4)
    assert (np.isinf(new.depth) == np.isinf(old.depth)).all()
    finite = np.isfinite(old.depth)
    np.testing.assert_allclose(new.depth[finite], old.depth[finite], rtol=1e-5)


def test_depth_order_holds_across_a_wide_depth_range_in_float32():
    """float32 importance: nearer content still wins at 50x the nearest depth, and content at
    1e4 x (beyond the ~120x the float32 range orders) is still splatted, not a hole."""
    img, flow, depth = _square_scene(near_depth=100.0, far_depth=200.0)
    depth[0, 0] = 2.0  # the nearest depth: everything else is 50-100x farther
    s = forward_splat(img, flow, depth)
    assert (s.image[9:15, 15:21, 0] > 254).all()  # the square (100) in front of 200
    img, flow, depth = _square_scene(near_depth=1e4, far_depth=2e4)
    depth[0, 0] = 1.0
    s = forward_splat(img, flow, depth)
    assert not s.hole[:, 16:].any() and np.isfinite(s.image).all()


def _dolly_scene(H=96, W=128, seed=4):
    """A dolly with parallax: a near bumpy object (magnified: footprints), sky at inf, 1 % of the
    sources invalid. Returns image, flow, depth, valid."""
    rng = np.random.default_rng(seed)
    img = texture(H, W)
    depth = np.full((H, W), 8.0, np.float32)
    depth[20:70, 30:90] = 2.0 + rng.random((50, 60)).astype(np.float32)
    depth[:12] = np.inf
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    mag = 1.0 + 1.8 / depth
    flow = np.stack([(xs - W / 2) * (mag - 1), (ys - H / 2) * (mag - 1) + 1.5], -1).astype(np.float32)
    return img, flow, depth, rng.random((H, W)) > 0.01


@pytest.mark.parametrize(
    "case", ["rgb depth", "rgb no depth", "gray float", "rgba", "nan flow", "no footprints"]
)
def test_compiled_kernel_equals_the_numpy_path(engine, case):
    """The numba kernel computes what the numpy path computes, up to float32 rounding (another
    summation order, the importance by squaring instead of exp/log): the same holes, colours
    within 1e-3 (of 255), coverage within 1e-5, depth within 1e-5 relative, the same inf."""
    if engine == "numpy":
        pytest.skip("compares the two implementations once")
    img, flow, depth, valid = _dolly_scene()
    kw = {"want_depth": True}
    if case == "rgb no depth":
        depth = None
        kw = {}
    elif case == "gray float":
        img = img[..., :1].astype(np.float64) / 255.0
    elif case == "rgba":
        img = np.concatenate([img, img[..., :1]], -1)
    elif case == "nan flow":
        flow[5:9, 40:60] = np.nan
        valid = None
    elif case == "no footprints":
        kw["max_footprint"] = 1
    new = forward_splat(img, flow, depth, valid, compiled=True, **kw)
    ref = forward_splat(img, flow, depth, valid, compiled=False, **kw)
    assert new.image.shape == ref.image.shape and new.image.dtype == np.float32
    np.testing.assert_array_equal(new.hole, ref.hole)
    assert 0 < new.hole.sum() < new.hole.size
    tol = 1e-3 if img.dtype == np.uint8 else 1e-3 / 255.0  # of the value range
    assert np.abs(new.image - ref.image).max() < tol
    np.testing.assert_allclose(new.coverage, ref.coverage, atol=1e-5)
    if depth is None:
        assert new.depth is None and ref.depth is None
    else:
        assert (np.isinf(new.depth) == np.isinf(ref.depth)).all()
        finite = np.isfinite(ref.depth)
        np.testing.assert_allclose(new.depth[finite], ref.depth[finite], rtol=1e-5)
