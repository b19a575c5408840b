"""What a drag moves (blender_animate/drags.py): outlines, objects of the id map, discs, fitted motion."""

import numpy as np
import pytest

from blender_animate.camera import project_points
from blender_animate.drags import drag_field, fit_motion
from blender_animate.flow import unified_flow

H, W = 40, 48
K = np.array([[40.0, 0, 24.0], [0, 40.0, 20.0], [0, 0, 1.0]])
STATIC = np.tile(np.eye(4), (3, 1, 1))


def ids_with(*boxes):
    """object_ids (H, W) int32 with object k + 1 filling boxes[k] = (y0, y1, x0, x1)."""
    ids = np.zeros((H, W), np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        ids[y0:y1, x0:x1] = k + 1
    return ids


def track(start, end, F=3):
    """(1, F, 2): from start to end at constant speed."""
    s, e = np.asarray(start, np.float32), np.asarray(end, np.float32)
    return (s + np.linspace(0, 1, F, dtype=np.float32)[:, None] * (e - s))[None]


def pixel_centres(mask):
    jj, ii = np.nonzero(mask)
    return np.stack([ii + 0.5, jj + 0.5], 1), (jj, ii)


def test_a_drag_moves_the_whole_object_it_starts_on_and_nothing_else():
    ids = ids_with((10, 22, 8, 20), (25, 35, 30, 44))
    tr = track((12.5, 14.5), (17.5, 11.5))  # starts on object 1: +5, -3
    res = unified_flow(np.full((H, W), 4.0), K, STATIC, tr, None, [2.0], object_ids=ids)
    obj = ids == 1
    np.testing.assert_allclose(res.flow[2][obj], np.broadcast_to([5.0, -3.0], (obj.sum(), 2)), atol=1e-5)
    np.testing.assert_allclose(res.flow[1][obj], np.broadcast_to([2.5, -1.5], (obj.sum(), 2)), atol=1e-5)
    assert (res.flow[:, ~obj] == 0).all()  # hard edge: the other object and the background stay


def test_drags_on_two_objects_move_each_by_its_own():
    ids = ids_with((10, 22, 8, 20), (25, 35, 30, 44))
    tr = np.concatenate([track((12.5, 14.5), (16.5, 14.5)), track((36.5, 30.5), (36.5, 27.5))])
    res = unified_flow(np.full((H, W), 4.0), K, STATIC, tr, None, [2.0, 2.0], object_ids=ids)
    assert np.allclose(res.flow[2][ids == 1], [4.0, 0.0], atol=1e-5)
    assert np.allclose(res.flow[2][ids == 2], [0.0, -3.0], atol=1e-5)


def test_two_drags_rotate_an_object_about_the_point_between_them():
    ids = ids_with((10, 30, 14, 34))
    c = np.array([24.0, 20.0])
    angle = np.deg2rad(20.0)
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    starts = np.array([[16.0, 20.0], [32.0, 20.0]])
    ends = (starts - c) @ R.T + c
    tr = np.concatenate([track(s, e) for s, e in zip(starts, ends)])
    field = drag_field(tr, [2.0, 2.0], None, H, W, object_ids=ids)
    assert [m["fit"] for m in field.movers] == ["similarity"]
    res = unified_flow(np.full((H, W), 4.0), K, STATIC, tr, None, [2.0, 2.0], object_ids=ids)
    x, where = pixel_centres(ids == 1)
    # Frame 2 is the whole rotation: every pixel of the object turns by 20 degrees about c.
    expected = (x - c) @ R.T + c - x
    np.testing.assert_allclose(res.flow[2][where], expected, atol=1e-3)


def test_three_drags_give_an_affine_motion_and_disagreeing_drags_a_warning():
    ids = ids_with((4, 36, 4, 44))
    A = np.array([[1.1, 0.2, -1.0], [0.0, 0.9, 2.0]])
    starts = np.array([[8.0, 8.0], [40.0, 10.0], [20.0, 32.0]])
    ends = starts @ A[:, :2].T + A[:, 2]
    tr = np.concatenate([track(s, e) for s, e in zip(starts, ends)])
    res = unified_flow(np.full((H, W), 4.0), K, STATIC, tr, None, 2.0, object_ids=ids, object_max_share=0.9)
    x, where = pixel_centres(ids == 1)
    np.testing.assert_allclose(res.flow[2][where], x @ A[:, :2].T + A[:, 2] - x, atol=1e-3)
    assert not res.warnings
    # A fourth drag pulling elsewhere: the least-squares fit cannot follow it, and says so.
    tr4 = np.concatenate([tr, track((30.0, 30.0), (10.0, 12.0))])
    field = drag_field(tr4, 2.0, None, H, W, object_ids=ids, object_max_share=0.9)
    assert field.movers[0]["fit"] == "affine" and field.movers[0]["residual_px"] > 5
    assert any("disagree" in w and "object 1" in w for w in field.warnings)


def test_an_object_covering_too_much_of_the_frame_moves_a_disc_instead():
    ids = ids_with((0, 40, 0, 48))  # the ground: the whole frame
    tr = track((24.5, 20.5), (28.5, 20.5))
    field = drag_field(tr, 6.0, None, H, W, object_ids=ids, object_max_share=0.35)
    assert field.movers[0]["kind"] == "disc"
    res = unified_flow(np.full((H, W), 4.0), K, STATIC, tr, None, [6.0], object_ids=ids)
    np.testing.assert_allclose(res.flow[2, 20, 24], [4.0, 0.0], atol=1e-5)  # the disc's centre
    assert (res.flow[2, 20, 32:] == 0).all() and (res.flow[2, :13] == 0).all()  # beyond its radius
    # With a larger share allowed, the same drag moves the whole frame.
    moved = unified_flow(
        np.full((H, W), 4.0), K, STATIC, tr, None, [6.0], object_ids=ids, object_max_share=1.0
    )
    assert np.allclose(moved.flow[2], [4.0, 0.0], atol=1e-5)


def test_an_outline_wins_over_the_object_under_it():
    ids = ids_with((10, 30, 8, 40))
    outline = np.zeros((1, H, W), bool)
    outline[0, 12:20, 10:20] = True  # a part of the object
    tr = track((14.5, 15.5), (17.5, 15.5))
    res = unified_flow(
        np.full((H, W), 4.0), K, STATIC, tr, None, [2.0], outline, region_feather=0, object_ids=ids
    )
    assert np.allclose(res.flow[2][outline[0]], [3.0, 0.0], atol=1e-5)
    assert (res.flow[2][(ids == 1) & ~outline[0]] == 0).all()


def test_object_pixels_move_at_their_own_depth_under_a_moving_camera():
    """Each pixel of a dragged object: shifted in frame 0's image, lifted with its own depth and
    filmed by camera f (checked against camera.project_points)."""
    ids = ids_with((10, 30, 10, 30))
    depth = np.full((H, W), 6.0, np.float32)
    depth[10:30, 10:30] = np.linspace(3.0, 5.0, 20, dtype=np.float32)[None, :]  # a slanted object
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[1, 0, 3], c2w[2, 0, 3] = 0.2, 0.5  # the camera slides right
    tr = track((15.5, 15.5), (21.5, 13.5))
    res = unified_flow(depth, np.tile(K, (3, 1, 1)), c2w, tr, None, [2.0], object_ids=ids)
    x, (jj, ii) = pixel_centres(ids == 1)
    moved = x + np.array([6.0, -2.0])
    d = depth[jj, ii].astype(np.float64)
    X0 = np.stack([(moved[:, 0] - K[0, 2]) / K[0, 0] * d, (moved[:, 1] - K[1, 2]) / K[1, 1] * d, d], 1)
    uv, _ = project_points(X0, c2w[2], K)
    np.testing.assert_allclose(res.flow[2][jj, ii], uv - x, atol=1e-3)


def test_a_drag_field_computed_once_gives_every_frame_the_same_flow():
    ids = ids_with((10, 22, 8, 20))
    tr = np.concatenate([track((12.5, 14.5), (17.5, 11.5), F=5), track((40.5, 5.5), (44.5, 9.5), F=5)])
    c2w = np.tile(np.eye(4), (5, 1, 1))
    c2w[:, 1, 3] = np.linspace(0, 0.3, 5)
    Ks = np.tile(K, (5, 1, 1))
    depth = np.full((H, W), 5.0)
    whole = unified_flow(depth, Ks, c2w, tr, None, [3.0, 3.0], object_ids=ids)
    field = drag_field(tr, [3.0, 3.0], None, H, W, object_ids=ids)
    for f in (1, 4):
        one = unified_flow(depth, Ks[[0, f]], c2w[[0, f]], tr[:, [0, f]], drags=field.at_frames([0, f]))
        np.testing.assert_array_equal(one.flow[1], whole.flow[f])


@pytest.mark.parametrize(
    "starts, kind",
    [
        ([[5.0, 5.0]], "translation"),
        ([[5.0, 5.0], [5.2, 5.1]], "translation"),  # (about) one pixel: the mean
        ([[5.0, 5.0], [15.0, 5.0]], "similarity"),
        ([[5.0, 5.0], [10.0, 5.0], [15.0, 5.0]], "similarity"),  # collinear: no affine
        ([[5.0, 5.0], [15.0, 5.0], [5.0, 15.0]], "affine"),
    ],
)
def test_fit_motion_picks_the_motion_the_drags_can_determine(starts, kind):
    starts = np.asarray(starts)
    targets = np.stack([starts, starts + [2.0, 1.0]], 1)  # a translation: every fit reproduces it
    A, got, miss = fit_motion(starts, targets)
    assert got == kind
    np.testing.assert_allclose(A[1, :, 2] + A[1, :, :2] @ starts[0], [2.0, 1.0], atol=1e-9)
    assert miss.max() < 1e-6 and np.abs(A[0]).max() < 1e-9
