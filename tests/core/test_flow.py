"""Sparse, camera and unified flow against independent geometry (OpenCV projection, plane homographies)."""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from blender_animate.camera import project_points
from blender_animate.flow import (
    DEFAULT_FALLBACK_DEPTH,
    camera_flow,
    drag_field,
    gaussian_sparse_flow,
    sparse_flow,
    unified_flow,
)

H, W = 24, 32


def K_of(fx=30.0, fy=32.0, cx=16.0, cy=12.0):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def pose(rotvec=(0, 0, 0), t=(0, 0, 0)):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


def pixel_grid():
    v, u = np.mgrid[0:H, 0:W] + 0.5
    return u, v


# --- sparse flow -------------------------------------------------------------------------------------


def test_sparse_flow_is_eq3():
    tracks = np.zeros((3, 4, 2), np.float32)
    tracks[0] = [[5.2, 7.9], [6.2, 7.9], [8.2, 6.9], [9.2, 5.9]]
    tracks[1] = [[20.0, 3.0], [19, 3], [18, 3], [17, 3]]
    tracks[2] = [[-4.0, 3.0], [1, 3], [2, 3], [3, 3]]  # starts outside: writes nothing
    visible = np.ones((3, 4), bool)
    visible[1, 2] = False
    flow, mask = sparse_flow(tracks, visible, H, W)
    assert flow.shape == (4, H, W, 2) and mask.shape == (4, H, W) and flow.dtype == np.float32
    # Track 0 starts in pixel (5, 7): its value there is T_f - T_0.
    np.testing.assert_allclose(flow[:, 7, 5], tracks[0] - tracks[0, 0], atol=1e-6)
    np.testing.assert_allclose(flow[:, 3, 20], [[0, 0], [-1, 0], [0, 0], [-3, 0]])
    assert mask[:, 3, 20].tolist() == [True, True, False, True]  # invisible at frame 2
    assert mask.sum(axis=(1, 2)).tolist() == [2, 2, 1, 2]
    assert (flow[0] == 0).all()
    # Two tracks in one pixel: the displacements are averaged.
    two = np.stack([tracks[0], tracks[0] + [[0.3, 0.0]] + np.arange(4)[:, None] * [0.0, 2.0]])
    f2, m2 = sparse_flow(two, None, H, W)
    np.testing.assert_allclose(f2[3, 7, 5], [4.0, -2.0 + 3.0], atol=1e-5)
    assert m2.sum() == 4


def test_gaussian_sparse_flow_kernel():
    tracks = np.zeros((1, 3, 2), np.float32)
    tracks[0] = [[10.5, 8.5], [12.5, 8.5], [10.5, 4.5]]
    flow, weight = gaussian_sparse_flow(tracks, None, H, W, kernel_size=9, sigma=2.0)
    np.testing.assert_allclose(flow[1, 8, 10], [2, 0])  # peak-normalised: the full value at the start pixel
    np.testing.assert_allclose(flow[2, 8 + 3, 10 + 4], np.exp(-25 / 8) * np.array([0, -4]), rtol=1e-5)
    np.testing.assert_allclose(weight[1, 8 + 3, 10 + 4], np.exp(-25 / 8), rtol=1e-5)
    assert (flow[:, 8, 10 + 5] == 0).all() and weight[1, 8, 15] == 0  # outside the 9 x 9 window
    assert (flow[0] == 0).all()
    # Two tracks from the same pixel: weights would sum to 2 -> averaged, weight capped at 1.
    two = np.concatenate([tracks, tracks + np.array([0, 0, 2.0], np.float32)[None, :, None]])
    f2, w2 = gaussian_sparse_flow(two, None, H, W, kernel_size=9, sigma=2.0)
    np.testing.assert_allclose(f2[2, 8, 10], [1, -3])  # mean of (0, -4) and (2, -2)
    assert w2.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="odd"):
        gaussian_sparse_flow(tracks, None, H, W, kernel_size=8)


# --- camera flow -------------------------------------------------------------------------------------


def reference_flow(depth, K, c2w):
    """Unproject frame-0 pixels explicitly, then project with cv2.projectPoints."""
    u, v = pixel_grid()
    K0 = K[0]
    Xc = np.stack([(u - K0[0, 2]) / K0[0, 0] * depth, (v - K0[1, 2]) / K0[1, 1] * depth, depth], -1).reshape(
        -1, 3
    )
    Xw = Xc @ c2w[0, :3, :3].T + c2w[0, :3, 3]
    flows, zs = [], []
    for f in range(len(c2w)):
        w2c = np.linalg.inv(c2w[f])
        rvec, _ = cv2.Rodrigues(w2c[:3, :3])
        p, _ = cv2.projectPoints(Xw, rvec, w2c[:3, 3], K[f], None)
        flows.append(p[:, 0].reshape(H, W, 2) - np.stack([u, v], -1))
        zs.append((Xw @ w2c[:3, :3].T + w2c[:3, 3])[:, 2].reshape(H, W))
    return np.stack(flows), np.stack(zs)


def test_camera_flow_matches_opencv_projection():
    rng = np.random.default_rng(0)
    depth = rng.uniform(2, 6, (H, W)).astype(np.float32)
    c2w = np.stack([pose()] + [pose(rng.normal(0, 0.05, 3), rng.normal(0, 0.2, 3)) for _ in range(3)])
    c2w = pose((0.1, -0.2, 0.3), (1, 2, 3)) @ c2w  # an arbitrary world: only relative motion matters
    K = np.stack([K_of(), K_of(31, 33, 15.5, 12.5), K_of(29, 30), K_of(35, 35)])
    flow, z, valid = camera_flow(depth, K, c2w)
    ref, zref = reference_flow(depth.astype(np.float64), K, c2w)
    assert flow.dtype == np.float32 and z.dtype == np.float32 and valid.dtype == bool
    np.testing.assert_allclose(flow, ref, atol=2e-3)
    np.testing.assert_allclose(z, zref, rtol=1e-5)
    assert (flow[0] == 0).all()
    land = ref + np.stack(pixel_grid(), -1)
    inside = (land[..., 0] >= 0) & (land[..., 0] < W) & (land[..., 1] >= 0) & (land[..., 1] < H)
    np.testing.assert_array_equal(valid, inside & (zref > 0))
    assert not valid.all()  # some pixels leave the view in this set-up


def test_pan_sign_convention():
    # The camera moves right (+x): the static scene moves left in the image.
    c2w = np.stack([pose(), pose(t=(0.5, 0, 0))])
    flow, _, _ = camera_flow(np.full((H, W), 5.0), K_of(), c2w)
    np.testing.assert_allclose(flow[1, ..., 0], -30 * 0.5 / 5, atol=1e-5)
    np.testing.assert_allclose(flow[1, ..., 1], 0, atol=1e-5)


def homography_flow(Hmat):
    u, v = pixel_grid()
    pts = np.stack([u, v], -1).reshape(-1, 1, 2)
    return (cv2.perspectiveTransform(pts, Hmat)[:, 0].reshape(H, W, 2)) - np.stack([u, v], -1)


def test_plane_under_pure_rotation_is_the_rotation_homography():
    K = K_of()
    c2w = np.stack([pose(), pose((0.03, -0.05, 0.02)), pose((-0.04, 0.02, -0.1))])
    for d in (1.0, 50.0, np.inf):  # any depth, even infinitely far: rotation flow ignores depth
        flow, z, valid = camera_flow(np.full((H, W), d), K, c2w)
        for f in (1, 2):
            Hmat = K @ c2w[f, :3, :3].T @ np.linalg.inv(K)  # K R_rel K^-1
            np.testing.assert_allclose(flow[f], homography_flow(Hmat), atol=2e-3)
        if np.isinf(d):
            assert np.isinf(z).all() and valid[0].all()


def test_tilted_plane_under_general_motion_is_the_plane_homography():
    # Plane n . X = dist in camera 0's frame; X_f = R X + t maps it by H = K_f (R + t n^T / dist) K_0^-1.
    K0, K1 = K_of(), K_of(34, 33, 15, 13)
    n = np.array([0.2, -0.3, 1.0])
    n /= np.linalg.norm(n)
    dist = 4.0
    u, v = pixel_grid()
    rays = np.stack([(u - K0[0, 2]) / K0[0, 0], (v - K0[1, 2]) / K0[1, 1], np.ones_like(u)], -1)
    depth = dist / (rays @ n)  # planar depth of the plane at each pixel
    c2w = np.stack([pose(), pose((0.02, 0.04, -0.03), (0.3, -0.1, 0.2))])
    T = np.linalg.inv(c2w[1]) @ c2w[0]
    Hmat = K1 @ (T[:3, :3] + np.outer(T[:3, 3], n) / dist) @ np.linalg.inv(K0)
    flow, _, _ = camera_flow(depth, np.stack([K0, K1]), c2w)
    np.testing.assert_allclose(flow[1], homography_flow(Hmat), atol=2e-3)


def test_far_and_behind_points():
    depth = np.full((H, W), 3.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2] = np.inf, 0.0, np.nan  # background: at infinity
    c2w = np.stack([pose(), pose(t=(1.0, 0, 0)), pose(t=(0, 0, 4.0))])
    flow, z, valid = camera_flow(depth, K_of(), c2w)
    assert (flow[1, 0, :3] == 0).all() and np.isinf(z[1, 0, :3]).all() and valid[1, 0, :3].all()
    # Frame 2 moved past the plane at depth 3: the plane is behind it, far points are not.
    assert not valid[2, 1:].any() and (flow[2, 1:] == 0).all() and (z[2, 1:] == 0).all()
    assert valid[2, 0, :3].all()


# --- unified flow ------------------------------------------------------------------------------------


def drag(start, disp, F=3):
    tr = np.zeros((1, F, 2), np.float32)
    tr[0] = np.asarray(start, np.float32) + np.linspace(0, 1, F)[:, None] * np.asarray(disp, np.float32)
    return tr


def test_unified_without_drags_is_camera_flow():
    rng = np.random.default_rng(1)
    depth = rng.uniform(2, 6, (H, W))
    c2w = np.stack([pose(), pose((0.02, 0.01, 0), (0.2, 0, 0.1))])
    res = unified_flow(depth, K_of(), c2w)
    flow, z, valid = camera_flow(depth, K_of(), c2w)
    np.testing.assert_array_equal(res.flow, flow)
    np.testing.assert_array_equal(res.depth, z)
    np.testing.assert_array_equal(res.valid, valid)
    assert res.warnings == []


def test_drag_falloff_with_static_camera():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    tr = drag((10.5, 12.5), (6.0, -2.0))
    res = unified_flow(np.full((H, W), 4.0), K_of(), c2w, tr, None, [8.0])
    np.testing.assert_allclose(res.flow[2, 12, 10], [6, -2], atol=1e-4)  # the start pixel moves fully
    np.testing.assert_allclose(res.flow[2, 12, 13], [6, -2], atol=1e-4)  # r = 3 <= radius / 2
    np.testing.assert_allclose(res.flow[1, 12, 10], [3, -1], atol=1e-4)
    assert (res.flow[:, 12, 18:] == 0).all() and (res.flow[:, 3, :] == 0).all()  # r >= radius: still
    # Between radius / 2 and radius: a smooth, monotone falloff of the same direction.
    ring = res.flow[2, 12, 10:19, 0]
    assert np.all(np.diff(ring) <= 1e-6) and 0 < ring[6] < 6
    np.testing.assert_allclose(res.flow[2, 12, 16], np.array([3, -1]), atol=1e-4)  # r = 6: halfway


def test_dragged_point_lands_at_target_seen_by_moving_camera():
    rng = np.random.default_rng(2)
    depth = rng.uniform(3, 5, (H, W))
    K = np.stack([K_of(), K_of(33, 34, 16.5, 11.5), K_of(36, 36)])
    c2w = np.stack(
        [pose(), pose((0.02, -0.03, 0.01), (0.3, 0.1, -0.2)), pose((0.05, 0.01, 0), (0.5, 0, 0.4))]
    )
    start = np.array([12.5, 9.5])
    tr = drag(start, (5.0, 3.0))
    res = unified_flow(depth, K, c2w, tr, None, [6.0])
    d = depth[9, 12]
    for f in range(3):
        # Independent: lift the target T_f with the start pixel's depth in camera 0, project into camera f.
        Tf = tr[0, f].astype(np.float64)
        Xc = d * np.array([(Tf[0] - 16) / 30, (Tf[1] - 12) / 32, 1.0])
        Xw = c2w[0, :3, :3] @ Xc + c2w[0, :3, 3]
        uv, z = project_points(Xw[None], c2w[f], K[f])
        np.testing.assert_allclose(start + res.flow[f, 9, 12], uv[0], atol=2e-3)
        np.testing.assert_allclose(res.depth[f, 9, 12], z[0], rtol=1e-5)
    # Far from the drag, pixels follow the camera exactly.
    cam, _, _ = camera_flow(depth, K, c2w)
    np.testing.assert_array_equal(res.flow[:, :, 25:], cam[:, :, 25:])


def test_overlapping_drags_are_normalised():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    one = drag((10.5, 12.5), (4.0, 0.0))
    res1 = unified_flow(None, K_of(), c2w, one, None, [8.0], height=H, width=W)
    res2 = unified_flow(None, K_of(), c2w, np.concatenate([one, one]), None, [8.0, 8.0], height=H, width=W)
    np.testing.assert_allclose(res2.flow, res1.flow, atol=1e-5)  # not doubled
    # Opposite drags 4 px apart: at the midpoint both weigh 1 (r = 2 <= 4), so they cancel.
    pair = np.concatenate([drag((8.5, 12.5), (4.0, 0)), drag((12.5, 12.5), (-4.0, 0))])
    res = unified_flow(None, K_of(), c2w, pair, None, [8.0, 8.0], height=H, width=W)
    np.testing.assert_allclose(res.flow[2, 12, 10], [0, 0], atol=1e-5)
    # At x = 6.5: w_A = 1 (r = 2), w_B = 0.5 (r = 6): the weighted mean, at the strength of the strongest.
    np.testing.assert_allclose(res.flow[2, 12, 6], [(4 - 0.5 * 4) / 1.5, 0], atol=1e-5)


def test_region_moves_with_the_fitted_motion_of_its_drags():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    region = np.zeros((1, H, W), bool)
    region[0, 4:16, 4:20] = True
    tracks = np.concatenate(
        [drag((6.5, 6.5), (3.0, 1.0)), drag((17.5, 13.5), (3.0, 1.0)), drag((27.5, 20.5), (0, -3.0))]
    )
    res = unified_flow(
        np.full((H, W), 5.0), K_of(), c2w, tracks, None, [2.0, 2.0, 2.0], region, region_feather=0
    )
    np.testing.assert_allclose(res.flow[2, 5:15, 5:19], np.broadcast_to([3.0, 1.0], (10, 14, 2)), atol=1e-5)
    assert (res.flow[:, 17:19, :] == 0).all()  # outside the region (the drags inside it have no disc)
    np.testing.assert_allclose(res.flow[2, 20, 27], [0, -3], atol=1e-5)  # the outside drag moves its disc
    # A soft edge: weights fall from 1 inside to 0 a few pixels outside.
    w = drag_field(tracks, [2.0] * 3, region, H, W, region_feather=2).weights
    assert w[:, 0].max() == pytest.approx(1.0) and ((w[:, 0] > 0) & (w[:, 0] < 1)).any()
    # A region with no drag inside does not move, and says so.
    empty = np.zeros((1, H, W), bool)
    empty[0, 18:22, 2:6] = True
    res2 = unified_flow(np.full((H, W), 5.0), K_of(), c2w, tracks[:1], None, [2.0], empty)
    assert any("no drag starting inside" in w for w in res2.warnings)
    assert (res2.flow[:, 18:22, 2:6] == 0).all()


def test_fallback_depth_with_warning():
    c2w = np.stack([pose(), pose(t=(0.5, 0, 0))])
    res = unified_flow(None, K_of(), c2w, height=H, width=W)
    assert len(res.warnings) == 1 and "no depth map" in res.warnings[0] and "10" in res.warnings[0]
    np.testing.assert_allclose(res.flow[1, ..., 0], -30 * 0.5 / DEFAULT_FALLBACK_DEPTH, atol=1e-5)
    res3 = unified_flow(None, K_of(), c2w, fallback_depth=2.5, height=H, width=W)
    assert "2.5" in res3.warnings[0]
    np.testing.assert_allclose(res3.flow[1, ..., 0], -30 * 0.5 / 2.5, atol=1e-5)
    with pytest.raises(ValueError, match="height and width"):
        unified_flow(None, K_of(), c2w)


def test_unified_errors():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    with pytest.raises(ValueError, match="frames"):
        unified_flow(np.ones((H, W)), K_of(), c2w, np.zeros((1, 4, 2)), None, [3.0])
    with pytest.raises(ValueError, match="radius"):
        unified_flow(np.ones((H, W)), K_of(), c2w, np.zeros((1, 3, 2)), None, [-3.0])
    with pytest.raises(ValueError, match="region_masks"):
        unified_flow(
            np.ones((H, W)), K_of(), c2w, np.zeros((1, 3, 2)), None, [3.0], np.zeros((1, 5, 5), bool)
        )


def test_a_region_moves_uniformly_up_to_the_image_border():
    """A feathered region touching the border moves by the whole drag at the border and in the
    corner too (the feather softens only the edges inside the image)."""
    c2w = np.tile(np.eye(4), (3, 1, 1))
    region = np.zeros((1, H, W), bool)
    region[0, :10, :12] = True  # the top-left corner of the image
    tracks = drag((4.5, 4.5), (4.0, 0.0))
    res = unified_flow(np.full((H, W), 5.0), K_of(), c2w, tracks, None, [2.0], region, region_feather=4)
    for y, x in ((5, 5), (0, 5), (5, 0), (0, 0)):  # inside, top border, left border, corner
        np.testing.assert_allclose(res.flow[2, y, x], [4.0, 0.0], atol=1e-5, err_msg=f"pixel {(y, x)}")
    # The inner edges stay soft: part of the way at the region's edge, nothing far from it.
    assert 0.0 < res.flow[2, 5, 12, 0] < 4.0 and res.flow[2, 5, 20, 0] == 0.0
