"""Hole filling: known pixels kept, holes filled from their surroundings, background preferred."""

from __future__ import annotations

import numpy as np
import pytest

from backend.preview import fill, pushpull
from backend.preview.fill import fill_holes
from backend.preview.pushpull import push_pull
from tests.backend.jobs import texture

HAVE_NUMBA = pushpull.compiled_kernel() is not None


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def engine(request, monkeypatch):
    """Every test runs on both implementations of the push-pull (and the uint8 conversion):
    numpy (compiled_kernel() None) and the numba kernel (fill_kernel; skipped where numba is not
    installed)."""
    if request.param == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    if request.param == "numpy":
        monkeypatch.setattr(pushpull, "compiled_kernel", lambda: None)
    return request.param


@pytest.mark.parametrize("method", ["pushpull", "telea"])
def test_known_pixels_are_kept_and_holes_filled(method):
    if method == "telea":
        pytest.importorskip("cv2")
    img = texture(40, 48)
    hole = np.zeros((40, 48), bool)
    hole[10:20, 15:30] = True
    hole[:, :4] = True  # a revealed border
    broken = img.copy()
    broken[hole] = 0
    out = fill_holes(broken, hole, method=method)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], img[~hole])
    assert out[hole].max(axis=-1).min() > 20  # nothing left black
    # Roughly the right colours: closer to the truth than to black.
    assert np.abs(out[hole].astype(int) - img[hole]).mean() < 0.5 * img[hole].mean()


def test_push_pull_reproduces_a_constant():
    img = np.full((33, 17, 3), 77.0, np.float32)
    w = np.ones((33, 17), np.float32)
    w[5:30, 2:15] = 0
    img[w == 0] = 0
    np.testing.assert_allclose(push_pull(img, w), 77.0, atol=1e-3)


def _disocclusion():
    """A hole between a near red object (left) and a far blue background (right and around):
    (image with the hole black, hole mask, depth)."""
    H, W = 32, 48
    img = np.zeros((H, W, 3), np.float32)
    img[...] = (0, 0, 255)
    depth = np.full((H, W), 10.0, np.float32)
    img[8:24, :16] = (255, 0, 0)
    depth[8:24, :16] = 4.0
    hole = np.zeros((H, W), bool)
    hole[8:24, 16:30] = True
    img[hole] = 0
    return img, hole, depth


def test_disocclusion_is_filled_from_the_background():
    img, hole, depth = _disocclusion()
    plain = fill_holes(img, hole, method="pushpull")
    aware = fill_holes(img, hole, depth=np.where(hole, np.inf, depth), method="background")
    red_plain = plain[hole][:, 0].mean()
    red_aware = aware[hole][:, 0].mean()
    assert red_aware < 10 < red_plain  # the depth-aware fill keeps the red out of the gap
    assert aware[hole][:, 2].min() > 200


def test_telea_smears_the_foreground_into_a_disocclusion():
    """The contrast case (a reported skip without OpenCV, no silent pass): cv2.inpaint ignores depth."""
    pytest.importorskip("cv2")
    img, hole, _ = _disocclusion()
    telea = fill_holes(img, hole, method="telea")
    assert telea[hole][:, 0].mean() > 10  # OpenCV's inpainting smears the foreground in


def test_nothing_to_fill_and_nothing_to_fill_from():
    img = texture(8, 8)
    assert fill_holes(img, np.zeros((8, 8), bool)) is img
    assert not fill_holes(img, np.ones((8, 8), bool)).any()


SKY = np.array([80, 150, 255], np.float32)
FLOOR_A, FLOOR_B = np.array([250, 250, 210], np.float32), np.array([40, 40, 40], np.float32)
NEAR_RED = np.array([230, 30, 30], np.float32)


def _sky_and_floor(H, W, horizon):
    """Sky (depth inf) above row `horizon`, a checkered floor below: depth 30 at the horizon down
    to 5 at the bottom, inverse depth linear in the row (a ground plane)."""
    img = np.empty((H, W, 3), np.float32)
    img[:horizon] = SKY
    y, x = np.mgrid[horizon:H, 0:W]
    img[horizon:] = np.where((((x // 4) + (y // 4)) % 2 == 0)[..., None], FLOOR_A, FLOOR_B)
    depth = np.full((H, W), np.inf, np.float32)
    t = (np.arange(horizon, H) - horizon) / max(H - 1 - horizon, 1)
    depth[horizon:] = (1.0 / (1 / 30 + t * (1 / 5 - 1 / 30)))[:, None]
    return img, depth


def _closer_to(pixels, a, b):
    """Mean distance of `pixels` (n, 3) to colour a is below that to colour b."""
    px = pixels.astype(np.float32)
    return np.linalg.norm(px - a, axis=-1).mean() < np.linalg.norm(px - b, axis=-1).mean()


def _not_red(pixels):
    px = pixels.astype(np.float32)
    return not ((px[:, 0] - px[:, 1] > 90) & (px[:, 0] - px[:, 2] > 90)).any()


def test_pan_reveal_behind_a_near_square_continues_floor_and_sky():
    """A near red square straddling the horizon of a sky (inf) over a floor, camera panning:
    the area it uncovers continues the floor below the horizon and the sky above it. (The old
    rule took the sky, being infinitely far, for the background of the whole hole, and pulled
    it down over the floor.)"""
    from backend.preview.splat import forward_splat

    H, W, horizon = 48, 64, 20
    img, depth = _sky_and_floor(H, W, horizon)
    img[10:36, 20:32] = NEAR_RED
    depth[10:36, 20:32] = 2.0
    flow = np.zeros((H, W, 2), np.float32)
    with np.errstate(divide="ignore"):
        flow[..., 0] = -30.0 / depth  # a pan to the right: parallax 30 / z px, the sky stays
    s = forward_splat(img, flow, depth, want_depth=True)
    assert s.hole[10:36].sum() > 100
    out = fill_holes(s.image, s.hole, depth=s.depth, method="background")
    floor_rows = s.hole.copy()
    floor_rows[: horizon + 6] = False
    sky_rows = s.hole.copy()
    sky_rows[horizon - 2 :] = False
    floor_mean = 0.5 * (FLOOR_A + FLOOR_B)
    assert floor_rows.sum() > 40 and sky_rows.sum() > 20
    assert _not_red(out[s.hole])
    assert _closer_to(out[floor_rows], floor_mean, SKY)
    assert _closer_to(out[sky_rows], SKY, floor_mean)


def test_border_strip_beside_a_near_object_stays_sky():
    """A strip revealed at the right border next to a near object in front of the sky, with the
    floor below: the strip continues the sky around the object, not the object, and not the
    floor stretched up in stripes (the old four-direction rule did that)."""
    H, W, horizon = 48, 64, 24
    img, depth = _sky_and_floor(H, W, horizon)
    img[8:horizon, 44:56] = NEAR_RED
    depth[8:horizon, 44:56] = 2.0
    hole = np.zeros((H, W), bool)
    hole[:horizon, 56:] = True
    img[hole] = 0
    depth[hole] = np.inf
    out = fill_holes(img, hole, depth=depth, method="background")
    upper = hole.copy()
    upper[16:] = False
    floor_mean = 0.5 * (FLOOR_A + FLOOR_B)
    assert _not_red(out[hole])
    assert _closer_to(out[upper], SKY, floor_mean)
    # No vertical stripes: neighbouring columns of the strip differ little.
    cols = out[:16, 56:].astype(np.float32)
    assert np.abs(np.diff(cols, axis=1)).mean() < 12


def _brute_nearest_known(hole, y, x, dy, dx):
    """The flat index of the nearest known pixel from hole pixel (y, x) in direction (dy, dx),
    stepping one pixel at a time; -1 when the line ends first."""
    H, W = hole.shape
    y, x = y + dy, x + dx
    while 0 <= y < H and 0 <= x < W:
        if not hole[y, x]:
            return y * W + x
        y, x = y + dy, x + dx
    return -1


@pytest.mark.parametrize("seed", range(4))
def test_hole_runs_give_the_nearest_known_pixels_of_a_scan(seed):
    """The nearest known pixel left, right, above and below every hole pixel, from the runs of
    hole pixels (the one before and after each run), equals a pixel-by-pixel scan."""
    from backend.preview.fill import hole_runs

    rng = np.random.default_rng(seed)
    for _ in range(25):
        H, W = (int(v) for v in rng.integers(1, 14, 2))
        hole = rng.random((H, W)) < rng.choice([0.1, 0.5, 0.8, 0.95])
        if seed == 0:
            hole[:, -1] = True  # a border strip
        at = np.flatnonzero(hole)
        got = np.full((4, at.size), -2)
        for axis, (ids, run, pos, line, first, last) in zip((1, 0), hole_runs(at, H, W)):
            size, stride, base = (W, 1, line * W) if axis == 1 else (H, W, line)
            assert np.array_equal(base[run] + pos * stride, at[ids])  # pixels and positions agree
            assert (first[run] <= pos).all() and (pos <= last[run]).all()
            lo = np.where(first > 0, base + (first - 1) * stride, -1)
            hi = np.where(last + 1 < size, base + (last + 1) * stride, -1)
            got[2 - 2 * axis, ids], got[3 - 2 * axis, ids] = lo[run], hi[run]
        ys, xs = np.divmod(at, W)
        want = [
            [_brute_nearest_known(hole, y, x, dy, dx) for y, x in zip(ys, xs)]
            for dy, dx in ((0, -1), (0, 1), (-1, 0), (1, 0))
        ]
        np.testing.assert_array_equal(got, np.array(want, int).reshape(4, -1))


def _scene(H, W):
    """A frame (H, W) with holes at fixed places near its top-left corner whatever its size: a
    disocclusion beside a near square in front of a wall, a corner revealed beside a near post,
    cracks in a floor, a strip at the left border. (image float32, hole, depth)."""
    from tests.backend.jobs import texture

    img = texture(480, 720)
    img = np.pad(img, ((0, H - 480), (0, W - 720), (0, 0)), mode="reflect").astype(np.float32)
    depth = np.full((H, W), np.inf, np.float32)  # sky
    depth[200:] = 8.0  # a floor
    depth[:160, :260] = 20.0  # a wall
    depth[60:140, 100:160] = 2.0  # a near square
    depth[5:15, 5:12] = 2.0  # a near post
    hole = np.zeros((H, W), bool)
    hole[60:140, 160:175] = True  # uncovered beside the square
    hole[:20, :5] = True  # the corner beside the post
    hole[300, 200:203] = True  # cracks in the floor
    hole[320:323, 400] = True
    hole[150:260, :4] = True  # revealed at the border, wall and floor
    img[hole] = 0
    depth[hole] = np.inf
    return img, hole, depth


@pytest.mark.parametrize("method", ["background", "pushpull"])
def test_fill_cost_follows_the_holes_not_the_frame(method, monkeypatch, engine):
    """The same holes in a 480 x 720 frame and in one four times as large: the fill gathers
    exactly as many pixels (depths, colours, pyramid cells; counted on the numpy path), a small
    multiple of the hole pixels, and fills them with the same values (the whole-frame work left
    is a few mask passes and the weight pyramid, one channel)."""
    counts = []

    def counting(real):
        def wrapped(*args, **kwargs):
            counts[-1] += sum(a.size for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "i")
            return real(*args, **kwargs)

        return wrapped

    for name in ("iz", "z_valid", "rgb"):
        monkeypatch.setattr(fill._Pixels, name, counting(getattr(fill._Pixels, name)))
    monkeypatch.setattr(pushpull, "_gather", counting(pushpull._gather))
    monkeypatch.setattr(pushpull, "_mark", counting(pushpull._mark))
    results = []
    for H, W in ((480, 720), (960, 1440)):
        img, hole, depth = _scene(H, W)
        counts.append(0)
        out = fill_holes(img, hole, depth=depth, method=method)
        results.append(out[hole])
        np.testing.assert_array_equal(out[~hole], np.clip(np.rint(img[~hole]), 0, 255).astype(np.uint8))
    n = int(_scene(480, 720)[1].sum())
    if engine == "numpy":  # the kernel gathers in compiled code: nothing to count
        assert counts[0] == counts[1] and 0 < counts[0] < 100 * n  # ~50 n; the frame has 345600
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("seed", range(6))
def test_sparse_push_pull_is_the_dense_one_bitwise(seed):
    """push_pull_sparse (only the pyramid cells the asked pixels depend on) returns the very
    float32 values of the dense push_pull, with `at` (the background fill) and without (the
    plain push-pull fill): odd sizes, scattered and large holes, deep pyramids."""
    from backend.preview.pushpull import push_pull_sparse

    rng = np.random.default_rng(seed)
    for _ in range(8):
        H, W = (int(v) for v in rng.integers(2, 150, 2))
        img = (rng.random((H, W, 3)) * 255).astype(np.float32)
        w = (rng.random((H, W)) > rng.random()).astype(np.float32)
        y, x = int(rng.integers(0, H)), int(rng.integers(0, W))
        w[y : y + int(rng.integers(1, 120)), x : x + int(rng.integers(1, 120))] = 0.0
        at = w < 1
        if not at.any():
            continue
        np.testing.assert_array_equal(push_pull_sparse(img, w, at), push_pull(img, w, at=at))
        np.testing.assert_array_equal(push_pull_sparse(img, w, at, blend="full"), push_pull(img, w)[at])


def test_sparse_push_pull_cost_follows_the_holes(monkeypatch, engine):
    """A few small holes in a large frame: the numpy path pulls values at a few hundred cells,
    not at the frame's (the whole-frame work left is the one-channel weight pyramid)."""
    if engine == "numba":
        pytest.skip("counts the numpy path's cells")
    H, W = 480, 720
    img = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.float32)
    w = np.ones((H, W), np.float32)
    w[100:104, 200:230] = 0.0
    w[300:320, 600:603] = 0.0
    sizes = []
    real = pushpull._mark
    monkeypatch.setattr(pushpull, "_mark", lambda n, idx: sizes.append(real(n, idx).size) or real(n, idx))
    got = pushpull.push_pull_sparse(img, w, w < 1)
    np.testing.assert_array_equal(got, push_pull(img, w, at=w < 1))
    assert sizes and sum(sizes) < 2000  # cells touched over all levels, vs 115200 at level 1 alone


def _random_push_pull_case(rng):
    """A random push-pull problem: (rows (H * W, C) uint8 / float32 / float64, weight (H, W)
    float32, at (n,) sorted flat indices, patch or None, max_levels)."""
    H, W = (int(v) for v in rng.integers(1, 90, 2))  # odd and even sizes, thin strips
    C = int(rng.choice([1, 3, 4]))
    img = rng.random((H * W, C)) * 255
    dtype = rng.choice(["uint8", "float32", "float64"])
    rows = img.astype(dtype)
    kind = rng.choice(["binary", "fractional", "none known", "all known", "out of range"])
    if kind == "binary":
        w = (rng.random((H, W)) > rng.random()).astype(np.float32)
    elif kind == "fractional":  # weights in [0, 1], many strictly between
        w = (rng.random((H, W)) * (rng.random((H, W)) > 0.3)).astype(np.float32)
    elif kind == "none known":
        w = np.zeros((H, W), np.float32)
    elif kind == "all known":
        w = np.ones((H, W), np.float32)
    else:  # clipped to [0, 1] by both
        w = (rng.random((H, W)) * 1.6 - 0.3).astype(np.float32)
    if kind != "all known":
        y, x = int(rng.integers(0, H)), int(rng.integers(0, W))
        w[y : y + int(rng.integers(1, 60)), x : x + int(rng.integers(1, 60))] = 0.0
    if rng.random() < 0.5:
        at = np.flatnonzero(w.reshape(-1) < 1)
    else:  # any pixels, known ones included
        at = np.flatnonzero(rng.random(H * W) < rng.random())
    patch = None
    if rng.random() < 0.3:
        idx = np.unique(rng.integers(0, H * W, 6))
        patch = (idx, (rng.random((idx.size, C)) * 255).astype(np.float32))
    return rows, w, at, patch, int(rng.choice([16, 16, 16, 4, 1, 0]))


@pytest.mark.parametrize("seed", range(4))
def test_compiled_push_pull_is_the_numpy_one_bitwise(engine, seed):
    """fill_kernel.push_pull_at returns the very float32 bits of the numpy push_pull_sparse:
    uint8 and float images, 1, 3 and 4 channels, blend "at" and "full", weights 0/1, fractional
    or out of [0, 1], no known pixel, all known, odd sizes, patched pixels, shallow pyramids."""
    if engine == "numpy":
        pytest.skip("compares the two implementations once")
    rng = np.random.default_rng(seed)
    for _ in range(60):
        rows, w, at, patch, levels = _random_push_pull_case(rng)
        for blend in ("at", "full"):
            kw = {"patch": patch, "max_levels": levels, "blend": blend}
            new = pushpull.push_pull_flat(rows, w, at, compiled=True, **kw)
            ref = pushpull.push_pull_flat(rows, w, at, compiled=False, **kw)
            assert new.dtype == ref.dtype == np.float32 and new.shape == ref.shape == (at.size, rows.shape[1])
            np.testing.assert_array_equal(new.view(np.uint32), ref.view(np.uint32))
    # The public entry on an image, and the dense push_pull it equals.
    rows, w, _, _, _ = _random_push_pull_case(np.random.default_rng(100 + seed))
    H, W = w.shape
    img = rows.reshape(H, W, -1).astype(np.float32)
    at = w < 1
    if at.any():
        got = pushpull.push_pull_sparse(img, w, at, compiled=True)
        np.testing.assert_array_equal(got.view(np.uint32), push_pull(img, w, at=at).view(np.uint32))


@pytest.mark.parametrize("method", ["background", "pushpull"])
def test_fill_holes_is_the_same_with_and_without_numba(engine, method, monkeypatch):
    """The whole fill, compiled push-pull and uint8 conversion against the numpy path: the same
    uint8 frame, on the test scene (cracks, disocclusions, border strips) and random holes."""
    if engine == "numpy":
        pytest.skip("compares the two implementations once")
    rng = np.random.default_rng(1)
    scenes = [_scene(480, 720)]
    for H, W in ((37, 51), (64, 64), (5, 200)):
        img = rng.random((H, W, 3)).astype(np.float32) * 300 - 20  # rounded and clipped
        depth = (rng.random((H, W)) * 10 + 1).astype(np.float32)
        hole = rng.random((H, W)) < 0.2
        hole[H // 3 : H // 2, W // 4 : W // 2] = True
        scenes += [(img, hole, depth), (np.clip(img, 0, 255).astype(np.uint8), hole, depth)]
    new = [fill_holes(img, hole, depth=depth, method=method) for img, hole, depth in scenes]
    monkeypatch.setattr(pushpull, "compiled_kernel", lambda: None)
    for out, (img, hole, depth) in zip(new, scenes):
        ref = fill_holes(img, hole, depth=depth, method=method)
        assert out.dtype == ref.dtype == np.uint8
        np.testing.assert_array_equal(out, ref)
        assert hole.any() and 0 < out[hole].max()


def test_compiled_uint8_conversion_rounds_half_to_even(engine):
    """fill._to_u8 (compiled where numba is installed): np.clip(np.rint(a), 0, 255) as uint8,
    halves to even, out-of-range values clipped, float32 and float64."""
    a = np.array([-3.0, -0.5, -0.2, 0.5, 1.5, 2.5, 127.49, 254.5, 255.5, 300.0], np.float32)
    want = np.array([0, 0, 0, 0, 2, 2, 127, 254, 255, 255], np.uint8)
    for dtype in (np.float32, np.float64):
        np.testing.assert_array_equal(fill._to_u8(a.astype(dtype).reshape(2, 5)), want.reshape(2, 5))
