"""Camera conventions of blender_animate.camera against independent math (OpenCV, scipy, Pillow)."""

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from blender_animate.camera import (
    CameraError,
    CameraTrack,
    invert_rigid,
    project_points,
    read_realestate10k,
    relative_to_first,
    rescale_intrinsics,
    write_realestate10k,
)


def random_c2w(rng, n):
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    c2w[:, :3, 3] = rng.normal(size=(n, 3))
    return c2w


def K_of(fx=500.0, fy=520.0, cx=360.0, cy=240.0):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def test_convention_point_on_axis_lands_on_principal_point():
    # Pixel centres at i + 0.5: with cx = W / 2 the optical axis hits u = W / 2 (between two pixels).
    c2w = np.eye(4)
    uv, z = project_points(np.array([[0.0, 0.0, 7.0]]), c2w, K_of(cx=360, cy=240))
    assert uv[0].tolist() == [360.0, 240.0]
    assert z[0] == 7.0


def test_convention_opencv_axes_signs():
    # x right, y down, z forward: world +X is right of centre, +Y below it.
    K = K_of()
    uv, _ = project_points(np.array([[1.0, 0, 5], [0, 1.0, 5], [0, 0, -5]]), np.eye(4), K)
    assert uv[0, 0] > 360 and uv[0, 1] == 240
    _, z = project_points(np.array([[0, 0, -5.0]]), np.eye(4), K)
    assert z[0] < 0  # behind the camera
    assert uv[1, 1] > 240 and uv[1, 0] == 360


def test_project_points_matches_opencv_projectPoints():
    rng = np.random.default_rng(1)
    c2w = random_c2w(rng, 1)[0]
    K = K_of(612.5, 600.25, 351.0, 233.5)
    # Points in front of the camera, placed in the camera frame and moved to the world.
    Xc = np.c_[rng.uniform(-2, 2, (50, 2)), rng.uniform(1, 9, 50)]
    Xw = Xc @ c2w[:3, :3].T + c2w[:3, 3]
    uv, z = project_points(Xw, c2w, K)
    w2c = np.linalg.inv(c2w)  # general inverse, not invert_rigid
    rvec, _ = cv2.Rodrigues(w2c[:3, :3])
    ref, _ = cv2.projectPoints(Xw, rvec, w2c[:3, 3], K, None)
    np.testing.assert_allclose(uv, ref[:, 0], atol=1e-9)
    np.testing.assert_allclose(z, Xc[:, 2], atol=1e-9)


def test_invert_rigid_matches_linalg_inv():
    c2w = random_c2w(np.random.default_rng(2), 5)
    np.testing.assert_allclose(invert_rigid(c2w), np.linalg.inv(c2w), atol=1e-12)


def test_relative_to_first_is_cameractrl_rule_and_world_invariant():
    rng = np.random.default_rng(3)
    c2w = random_c2w(rng, 6)
    rel = relative_to_first(c2w)
    np.testing.assert_array_equal(rel[0], np.eye(4))
    np.testing.assert_allclose(rel, np.linalg.inv(c2w[0]) @ c2w, atol=1e-12)
    # Moving the whole world (any rigid G applied to every camera) leaves relative poses unchanged.
    G = random_c2w(rng, 1)[0]
    np.testing.assert_allclose(relative_to_first(G @ c2w), rel, atol=1e-10)
    # Relative motion between any two frames is preserved.
    np.testing.assert_allclose(np.linalg.inv(rel[2]) @ rel[4], np.linalg.inv(c2w[2]) @ c2w[4], atol=1e-10)


def test_rescale_intrinsics_same_aspect_scales_projections():
    K = K_of(500, 520, 350, 250)
    X = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 3.0]])
    uv, _ = project_points(X, np.eye(4), K)
    uv2, _ = project_points(X, np.eye(4), rescale_intrinsics(K, (720, 480), (90, 60)))
    np.testing.assert_allclose(uv2, uv / 8, atol=1e-12)


def test_rescale_intrinsics_crop_rule_when_aspect_changes():
    K = K_of(500, 500, 360, 240)
    # 720x480 -> 480x480: scale 1, 120 px cropped from each side.
    K2 = rescale_intrinsics(K, (720, 480), (480, 480))
    np.testing.assert_allclose(K2, K_of(500, 500, 240, 240))
    # 720x480 -> 256x256: scale = max(256/720, 256/480) = 0.5333; width 384 centre-cropped to 256.
    K3 = rescale_intrinsics(K, (720, 480), (256, 256))
    s = 256 / 480
    np.testing.assert_allclose(K3, K_of(500 * s, 500 * s, 360 * s - 64, 240 * s))
    K4 = rescale_intrinsics(K, (720, 480), (360, 480), mode="stretch")
    np.testing.assert_allclose(K4, K_of(250, 500, 180, 240))
    with pytest.raises(CameraError, match="mode"):
        rescale_intrinsics(K, (720, 480), (360, 480), mode="fit")


def test_rescale_intrinsics_matches_a_real_image_resize():
    # Independent check of the pixel-centre rule: draw a blob where K projects a point, resize the
    # image with Pillow's area filter, and find the blob where the rescaled K says.
    H, W = 96, 128
    K = K_of(100, 100, 61.3, 50.7)
    X = np.array([[0.4, -0.3, 2.0]])
    ((u, v),), _ = project_points(X, np.eye(4), K)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    img = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 4.0**2))
    small = np.asarray(Image.fromarray(img.astype(np.float32)).resize((32, 24), Image.BOX), np.float64)
    yy, xx = np.mgrid[0:24, 0:32] + 0.5
    centroid = np.array([(small * xx).sum(), (small * yy).sum()]) / small.sum()
    ((u2, v2),), _ = project_points(X, np.eye(4), rescale_intrinsics(K, (W, H), (32, 24)))
    np.testing.assert_allclose(centroid, [u2, v2], atol=0.02)


def test_track_relative_and_resized():
    rng = np.random.default_rng(4)
    track = CameraTrack(random_c2w(rng, 3), K_of(), 720, 480).validate()
    assert track.K.shape == (3, 3, 3)  # one K broadcast to every frame
    rel = track.relative()
    np.testing.assert_array_equal(rel.c2w[0], np.eye(4))
    # Every frame, not just frame 0: w2c[0] @ c2w[i], with K and size unchanged.
    np.testing.assert_allclose(rel.c2w, np.linalg.inv(track.c2w[0]) @ track.c2w, atol=1e-12)
    np.testing.assert_array_equal(rel.K, track.K)
    assert (rel.width, rel.height) == (720, 480)
    small = track.resized(360, 240)
    assert (small.width, small.height) == (360, 240)
    np.testing.assert_allclose(small.K, np.broadcast_to(K_of(250.0, 260.0, 180.0, 120.0), (3, 3, 3)))
    np.testing.assert_array_equal(small.c2w, track.c2w)  # resizing leaves the poses alone
    # An aspect change crops the centre (the default) or stretches.
    square = track.resized(480, 480)
    np.testing.assert_allclose(square.K[0], K_of(500.0, 520.0, 240.0, 240.0))
    np.testing.assert_allclose(track.resized(360, 480, mode="stretch").K[0], K_of(250.0, 520.0, 180.0, 240.0))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.c2w.__setitem__((1, 0, 3), np.nan), "frame 1 holds NaN"),
        (lambda t: t.c2w.__setitem__((2, slice(0, 3), 0), 2 * t.c2w[2, :3, 0]), "frame 2 is not orthonormal"),
        (lambda t: t.c2w.__setitem__((0, slice(0, 3), 0), -t.c2w[0, :3, 0]), "reflection"),
        (lambda t: t.c2w.__setitem__((1, 3, 0), 0.5), "not rigid"),
        (lambda t: t.K.__setitem__((2, 0, 0), -5.0), "focal length"),
        (lambda t: t.K.__setitem__((0, 2, 0), 0.1), "upper-triangular"),
        (lambda t: t.K.__setitem__((0, 1, 2), np.inf), "NaN or infinite"),
        (lambda t: setattr(t, "width", 0), "positive"),
        (lambda t: setattr(t, "height", 480.0), "integers"),
        (lambda t: setattr(t, "K", t.K[:2]), r"shape \(3, 3, 3\)"),
        (lambda t: setattr(t, "timestamps_us", np.zeros(2)), "timestamps_us"),
    ],
)
def test_validate_errors(change, message):
    track = CameraTrack(random_c2w(np.random.default_rng(5), 3), K_of(), 720, 480)
    change(track)
    with pytest.raises(CameraError, match=message):
        track.validate()


def test_realestate10k_reads_a_known_line(tmp_path):
    # A 3x4 world-to-camera matrix: identity rotation, translation (1, 2, 3) -> camera centre (-1, -2, -3).
    line = "33366667 0.5 0.8 0.5 0.5 0 0 1 0 0 1 0 1 0 2 0 0 1 3"
    (tmp_path / "cam.txt").write_text("https://www.youtube.com/watch?v=abc\n" + line + "\n")
    track = read_realestate10k(tmp_path / "cam.txt", 640, 360)
    np.testing.assert_allclose(track.c2w[0, :3, 3], [-1, -2, -3])
    np.testing.assert_allclose(track.K[0], K_of(320, 288, 320, 180))
    assert track.timestamps_us.tolist() == [33366667]
    assert track.url == "https://www.youtube.com/watch?v=abc"
    # With the source video's size, a 16:9 video centre-cropped to 720x480 (CameraCtrl's rule).
    t2 = read_realestate10k(tmp_path / "cam.txt", 720, 480, source_size=(640, 360))
    s = 480 / 360
    np.testing.assert_allclose(t2.K[0], K_of(320 * s, 288 * s, 320 * s - (640 * s - 720) / 2, 240))


def test_realestate10k_round_trip(tmp_path):
    rng = np.random.default_rng(6)
    K = np.stack([K_of(500 + i, 510 + i, 360.5, 239.25) for i in range(4)])
    track = CameraTrack(random_c2w(rng, 4), K, 720, 480).validate()
    write_realestate10k(tmp_path / "out.txt", track, url="https://example.com/v")
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines[0] == "https://example.com/v" and len(lines) == 5
    assert all(len(ln.split()) == 19 for ln in lines[1:])
    back = read_realestate10k(tmp_path / "out.txt", 720, 480)
    np.testing.assert_allclose(back.c2w, track.c2w, atol=1e-7)
    np.testing.assert_allclose(back.K, track.K, rtol=1e-8)
    # Default timestamps: frame / 30 fps in microseconds.
    assert back.timestamps_us.tolist() == [0, 33333, 66667, 100000]
    # The file's matrix is world-to-camera: applying it to the camera centre gives the origin.
    row = np.array(lines[2].split()[7:], float).reshape(3, 4)
    np.testing.assert_allclose(row[:, :3] @ track.c2w[1, :3, 3] + row[:, 3], 0, atol=1e-6)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("url\n", "no camera lines"),
        ("url\n1 2 3\n", "19 numbers"),
        ("url\n0 .5 .5 .5 .5 0 0 1 0 0 0 0 1 0 0 0 0 x 0\n", "line 2"),
        ("url\n0 .5 .5 .5 .5 0 0 2 0 0 0 0 1 0 0 0 0 1 0\n", "orthonormal"),
        ("url\n0 -.5 .5 .5 .5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n", "focal length"),
    ],
)
def test_realestate10k_errors(tmp_path, text, message):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(CameraError, match=message):
        read_realestate10k(tmp_path / "bad.txt")


def test_write_realestate10k_rejects_skew(tmp_path):
    K = K_of()
    K[0, 1] = 3.0
    track = CameraTrack(np.eye(4)[None], K, 720, 480)
    with pytest.raises(CameraError, match="skew"):
        write_realestate10k(tmp_path / "x.txt", track)
    assert not list(tmp_path.iterdir())
