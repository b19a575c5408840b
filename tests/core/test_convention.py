"""The track convention (blender_animate/track_space.py): job tracks are object motion in frame-0
image space, screen tracks are where the point is seen in frame f. The conversion is checked against
the preview's unified flow and against independent geometry (camera.project_points of the lifted
point)."""

import numpy as np
import pytest

from blender_animate.camera import project_points
from blender_animate.flow import DEFAULT_FALLBACK_DEPTH, camera_flow, unified_flow
from blender_animate.track_space import object_tracks, screen_tracks, screen_tracks_with_depth

H, W, F = 24, 32, 5


def K_of(f=30.0):
    return np.tile(np.array([[f, 0, W / 2], [0, f + 2, H / 2], [0, 0, 1.0]]), (F, 1, 1))


def cams(kind):
    c2w = np.tile(np.eye(4), (F, 1, 1))
    t = np.arange(F, dtype=np.float64)
    if kind == "pan":
        c2w[:, 0, 3] = 0.4 * t
    elif kind == "dolly":
        c2w[:, 2, 3] = 0.5 * t
    elif kind == "orbit":
        a = np.deg2rad(3.0) * t
        c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 2, 0], c2w[:, 2, 2] = np.cos(a), np.sin(a), -np.sin(a), np.cos(a)
        c2w[:, 0, 3] = 0.2 * t
        c2w[:, 1, 3] = -0.1 * t
    return c2w


def layered_depth():
    d = np.full((H, W), 8.0, np.float32)
    d[6:18, 8:22] = 4.0
    d[:3] = np.inf  # far (sky)
    return d


def pins(*pixels):
    """Static job tracks at pixel centres (i + 0.5, j + 0.5)."""
    p = np.array([[i + 0.5, j + 0.5] for i, j in pixels], np.float32)
    return np.repeat(p[:, None], F, axis=1)


def test_convention_static_pin_under_a_pan_stays_on_its_scene_point():
    depth, K, c2w = layered_depth(), K_of(), cams("pan")
    pixels = [(12, 10), (26, 20), (5, 1)]  # near square, background wall, sky
    tr = pins(*pixels)
    screen, visible = screen_tracks(tr, depth, K, c2w)
    cam, _, cam_valid = camera_flow(depth, K, c2w)
    uf = unified_flow(depth, K, c2w, tr, None, np.full(len(tr), 3.0, np.float32))
    for n, (i, j) in enumerate(pixels):
        # The preview: a pin's pixel moves with the camera flow (the content stays on the scene point).
        np.testing.assert_allclose(uf.flow[:, j, i], cam[:, j, i], atol=1e-5)
        # The conversion: the same screen positions.
        np.testing.assert_allclose(screen[n], tr[n, 0] + cam[:, j, i], atol=1e-4)
        np.testing.assert_array_equal(visible[n], cam_valid[:, j, i])
    # A pan moves near content more than far content, and the sky not at all.
    assert screen[0, -1, 0] < screen[1, -1, 0] - tr[1, 0, 0] + tr[0, 0, 0] < tr[0, 0, 0]
    np.testing.assert_allclose(screen[2], tr[2], atol=1e-5)


def test_convention_moving_drag_under_a_static_camera_is_unchanged():
    depth, K, c2w = layered_depth(), K_of(), cams("static")
    tr = np.zeros((2, F, 2), np.float32)
    tr[0] = np.stack([np.linspace(10.3, 40.0, F), np.linspace(12.7, 5.0, F)], -1)  # leaves the image
    tr[1] = np.stack([np.linspace(3.2, 9.0, F), np.full(F, 20.1)], -1)
    screen, visible = screen_tracks(tr, depth, K, c2w)
    np.testing.assert_allclose(screen, tr, atol=1e-4)
    np.testing.assert_array_equal(visible[0], tr[0, :, 0] < W)
    assert visible[1].all()
    # Without depth, on the fallback plane: also unchanged.
    np.testing.assert_allclose(screen_tracks(tr, None, K, c2w, height=H, width=W)[0], tr, atol=1e-4)


@pytest.mark.parametrize("kind", ["dolly", "orbit"])
def test_convention_drag_is_where_the_unified_flow_sends_its_start_pixel(kind):
    depth, K, c2w = layered_depth(), K_of(), cams(kind)
    tr = np.zeros((2, F, 2), np.float32)
    tr[0] = np.stack([np.linspace(12.5, 17.5, F), np.linspace(10.5, 13.0, F)], -1)  # on the near square
    tr[1] = np.stack([np.linspace(26.5, 22.0, F), np.full(F, 20.5)], -1)  # on the wall
    screen, visible, z = screen_tracks_with_depth(tr, depth, K, c2w)
    uf = unified_flow(depth, K, c2w, tr, None, np.full(2, 2.0, np.float32))
    for n in range(2):
        i, j = np.floor(tr[n, 0]).astype(int)
        np.testing.assert_allclose(screen[n], tr[n, 0] + uf.flow[:, j, i], atol=1e-3)
        np.testing.assert_array_equal(visible[n], uf.valid[:, j, i])
        np.testing.assert_allclose(z[n], uf.depth[:, j, i], rtol=1e-5)
        # Independent math: T_f lifted with the start's depth into camera 0, projected by camera f.
        d = float(depth[j, i])
        X_cam0 = d * (np.linalg.inv(K[0]) @ np.c_[tr[n], np.ones(F)].T).T  # (F, 3) in camera 0
        X_world = X_cam0 @ c2w[0, :3, :3].T + c2w[0, :3, 3]
        for f in range(F):
            uv, zf = project_points(X_world[f : f + 1], c2w[f], K[f])
            np.testing.assert_allclose(screen[n, f], uv[0], atol=1e-3)
            np.testing.assert_allclose(z[n, f], zf[0], rtol=1e-5)
    assert np.abs(screen - tr).max() > 1.0  # the camera really moved the drags


def test_convention_fallback_plane_and_far_content():
    K, c2w = K_of(), cams("pan")
    tr = pins((10, 10))
    for fd, plane in ((0.0, DEFAULT_FALLBACK_DEPTH), (2.5, 2.5)):
        s, _ = screen_tracks(tr, None, K, c2w, fallback_depth=fd, height=H, width=W)
        cam, _, _ = camera_flow(np.full((H, W), plane, np.float32), K, c2w)
        np.testing.assert_allclose(s[0], tr[0, 0] + cam[:, 10, 10], atol=1e-4)
    with pytest.raises(ValueError, match="height and width"):
        screen_tracks(tr, None, K, c2w)
    with pytest.raises(ValueError, match="frames"):
        screen_tracks(tr[:, :3], layered_depth(), K, c2w)


def test_convention_behind_the_camera_is_hidden():
    depth = np.full((H, W), 2.0, np.float32)
    c2w = cams("static")
    c2w[:, 2, 3] = np.arange(F) * 1.5  # dolly through the wall at 2 units: behind from frame 2
    s, vis, z = screen_tracks_with_depth(pins((16, 12)), depth, K_of(), c2w)
    assert vis[0, :2].all() and not vis[0, 2:].any()
    assert (z[0, 2:] == 0).all() and np.isfinite(s).all()


@pytest.mark.parametrize("kind", ["pan", "dolly", "orbit"])
def test_convention_object_tracks_inverts_screen_tracks(kind):
    depth, K, c2w = layered_depth(), K_of(), cams(kind)
    rng = np.random.default_rng(0)
    tr = np.zeros((6, F, 2), np.float32)
    tr[:, 0] = rng.uniform([0, 0], [W, H], (6, 2))
    tr[:, 1:] = tr[:, :1] + np.cumsum(rng.normal(0, 1.5, (6, F - 1, 2)), axis=1)
    screen, _ = screen_tracks(tr, depth, K, c2w)
    back, ok = object_tracks(screen, depth, K, c2w)
    assert ok.all()
    np.testing.assert_allclose(back, tr, atol=2e-3)
    # A tracker's screen tracks of static content (the camera flow) are pins in job space.
    cam, _, _ = camera_flow(depth, K, c2w)
    j, i = 20, 27
    measured = (np.array([i + 0.5, j + 0.5]) + cam[:, j, i])[None].astype(np.float32)
    job, ok = object_tracks(measured, depth, K, c2w)
    np.testing.assert_allclose(job[0], np.repeat([[i + 0.5, j + 0.5]], F, 0), atol=1e-3)
