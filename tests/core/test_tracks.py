"""Tracks from strokes: arc-length spacing, PCHIP timing (against scipy), start frames, visibility, masks."""

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from blender_animate.tracks import (
    DEFAULT_RADIUS,
    build_tracks,
    pchip_interpolate,
    polygon_mask,
    resample_stroke,
)


def test_arclength_evenly_spaced_along_a_bent_polyline():
    # An L: 30 px right then 10 px down, drawn with uneven point density on the first leg.
    pts = np.array([[10, 10], [11, 10], [12, 10], [40, 10], [40, 20]], float)
    tr = resample_stroke(pts, 9)
    assert tr[0].tolist() == [10, 10] and tr[-1].tolist() == [40, 20]
    # Equal steps of arc length: 40 px / 8 = 5 px per frame; frame 6 is at 30 px = the corner.
    steps = np.array([np.linalg.norm(tr[i + 1] - tr[i]) for i in range(5)])
    np.testing.assert_allclose(steps, 5.0)
    np.testing.assert_allclose(tr[6], [40, 10])
    np.testing.assert_allclose(tr[7], [40, 15])


def test_start_frame_holds_then_runs():
    pts = np.array([[0.0, 0], [10, 0]])
    tr = resample_stroke(pts, 6, start_frame=2)
    np.testing.assert_allclose(tr[:, 0], [0, 0, 0, 10 / 3, 20 / 3, 10])
    last = resample_stroke(pts, 4, start_frame=3)  # starts at the last frame: jumps there
    np.testing.assert_allclose(last[:, 0], [0, 0, 0, 10])
    with pytest.raises(ValueError, match="start_frame"):
        resample_stroke(pts, 4, start_frame=4)


def test_numpy_pchip_matches_scipy():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(0.1, 2.0, 12))
    y = rng.normal(size=(12, 2)) * 20
    xq = np.linspace(x[0], x[-1], 101)
    np.testing.assert_allclose(pchip_interpolate(x, y, xq), PchipInterpolator(x, y)(xq), atol=1e-10)
    # Two points: linear; monotone data stays monotone.
    np.testing.assert_allclose(pchip_interpolate([0, 2], [1, 5], [0, 1, 2]), [1, 3, 5])
    mono = pchip_interpolate(x, np.cumsum(rng.uniform(0, 1, 12)), xq)
    assert np.all(np.diff(mono) >= -1e-12)


def test_time_timing_follows_drawing_speed():
    # Drawn slowly at first (2 s for the first 10 px), then fast (0.5 s for the next 30 px).
    pts = np.array([[0.0, 0], [10, 0], [40, 0]])
    t = np.array([0.0, 2.0, 2.5])
    tr = resample_stroke(pts, 11, times=t)
    ref = PchipInterpolator(t, pts)(np.linspace(0, 2.5, 11))
    np.testing.assert_allclose(tr, ref, atol=1e-9)
    assert tr[8, 0] < 10.5  # 80% of the time, only about a quarter of the way
    # Equal times are merged, keeping the later point; the stroke still ends at its last point.
    tr2 = resample_stroke(np.array([[0.0, 0], [5, 0], [10, 0], [20, 0]]), 5, times=[0, 1, 1, 2])
    assert tr2[-1].tolist() == [20, 0]
    with pytest.raises(ValueError, match="non-decreasing"):
        resample_stroke(pts, 5, times=[0, 2, 1])


def test_build_tracks_shapes_visibility_radius():
    strokes = [np.array([[10.0, 10], [100, 10]]), np.array([[50.0, 50], [50, -30]]), np.array([[5.0, 5]])]
    tr, vis, rad = build_tracks(strokes, 5, width=64, height=48, radii=[4, 6, 8], start_frames=[0, 1, 0])
    assert tr.shape == (3, 5, 2) and tr.dtype == np.float32
    assert vis.dtype == bool and rad.dtype == np.float32 and rad.tolist() == [4, 6, 8]
    # Stroke 0 leaves through the right edge (x >= 64 is outside).
    assert vis[0].tolist() == [True, True, True, False, False]  # x = 10, 32.5, 55, 77.5, 100
    # Stroke 1 starts outside (y = 50 >= 48), waits one frame, then moves up through the image.
    assert vis[1].tolist() == [False, False, True, False, False]  # y = 50, 50, 23.3, -3.3, -30
    # A single point gives a static track.
    assert (tr[2] == 5).all() and vis[2].all()
    _, vis_all, rad_d = build_tracks(strokes, 5)
    assert vis_all.all() and (rad_d == DEFAULT_RADIUS).all()
    empty = build_tracks([], 7)
    assert empty[0].shape == (0, 7, 2) and empty[1].shape == (0, 7) and empty[2].shape == (0,)


def test_build_tracks_time_mode_uses_times_where_given():
    strokes = [np.array([[0.0, 0], [10, 0], [40, 0]])] * 2
    tr, _, _ = build_tracks(strokes, 11, times=[np.array([0, 2, 2.5]), None], timing="time")
    np.testing.assert_allclose(tr[0], resample_stroke(strokes[0], 11, times=[0, 2, 2.5]), atol=1e-5)
    np.testing.assert_allclose(tr[1, :, 0], np.linspace(0, 40, 11), atol=1e-5)  # no times: arc length
    arc, _, _ = build_tracks(strokes, 11, times=[np.array([0, 2, 2.5]), None])  # timing defaults to arclength
    np.testing.assert_allclose(arc[0, :, 0], np.linspace(0, 40, 11), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timing": "speed"}, "timing"),
        ({"radii": [1.0]}, "one entry per stroke"),
        ({"radii": [1.0, -2.0]}, "radii"),
        ({"start_frames": [0]}, "one entry per stroke"),
    ],
)
def test_build_tracks_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tracks([np.zeros((2, 2)), np.ones((2, 2))], 4, **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        build_tracks([np.array([[0.0, np.nan], [1, 1]])], 4)


def brute_force_inside(poly, x, y):
    """Classic even-odd ray casting for one point."""
    inside = False
    n = len(poly)
    for k in range(n):
        (x0, y0), (x1, y1) = poly[k], poly[(k + 1) % n]
        if (y0 <= y) != (y1 <= y):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            if x < xc:
                inside = not inside
    return inside


def test_polygon_mask_matches_ray_casting():
    rng = np.random.default_rng(1)
    H, W = 23, 31
    # A star (non-convex, self-consistent) and a random self-intersecting polygon.
    ang = np.linspace(0, 2 * np.pi, 11)[:-1]
    r = np.where(np.arange(10) % 2, 4.0, 10.0)
    star = np.c_[15.2 + r * np.cos(ang), 11.7 + r * np.sin(ang)]
    for poly in (star, rng.uniform(-3, [W + 3, H + 3], (9, 2))):
        mask = polygon_mask(poly, H, W)
        ref = np.array([[brute_force_inside(poly, i + 0.5, j + 0.5) for i in range(W)] for j in range(H)])
        np.testing.assert_array_equal(mask, ref)


def test_polygon_mask_rectangle_area_and_degenerate():
    mask = polygon_mask(np.array([[2.0, 3], [12, 3], [12, 8], [2, 8]]), 20, 20)
    assert mask.sum() == 50 and mask[3, 2] and not mask[8, 2] and not mask[3, 12]
    assert not polygon_mask(np.array([[0.0, 0], [5, 5]]), 10, 10).any()
