"""The camera reader against Blender's own projection (bpy_extras.object_utils.world_to_camera_view)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.blender


def _camera(bpy, scene, name="Cam"):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def _blender_pixels(bpy, scene, cam, X, width, height):
    """(N,2) pixels and (N,) depth of world points X through Blender's own function at the current frame."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    out = np.array([tuple(world_to_camera_view(scene, cam, Vector(p))) for p in X])
    return np.stack([out[:, 0] * width, (1.0 - out[:, 1]) * height], axis=1), out[:, 2]


def _points_in_view(rng, c2w, K, width, height, n=40):
    """World points that project inside the image at depths 1..50 (so the check covers the frame)."""
    uv = rng.uniform([0, 0], [width, height], size=(n, 2))
    z = rng.uniform(1.0, 50.0, size=n)
    xc = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0] * z, (uv[:, 1] - K[1, 2]) / K[1, 1] * z, z], axis=1)
    return xc @ c2w[:3, :3].T + c2w[:3, 3]


def _assert_matches_blender(bpy, aa, scene, samples, rng, tol=5e-3):
    camera = aa("blender_animate.camera")
    for i, t in enumerate(samples.times):
        frame = math.floor(t)
        scene.frame_set(frame, subframe=float(t - frame))
        X = _points_in_view(rng, samples.c2w[i], samples.K[i], samples.width, samples.height)
        uv, z = camera.project_points(X, samples.c2w[i], samples.K[i])
        uv_b, z_b = _blender_pixels(bpy, scene, scene.camera, X, samples.width, samples.height)
        np.testing.assert_allclose(uv, uv_b, atol=tol, err_msg=f"sample {i} (frame {t})")
        np.testing.assert_allclose(z, z_b, rtol=1e-5, err_msg=f"sample {i} (frame {t})")


def test_random_static_cameras_match_world_to_camera_view(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    rng = np.random.default_rng(0)
    cam = _camera(bpy, scene)
    for trial in range(12):
        c = cam.data
        c.lens = rng.uniform(12, 150)
        c.sensor_width = rng.uniform(20, 40)
        c.sensor_height = rng.uniform(15, 30)
        c.sensor_fit = ("AUTO", "HORIZONTAL", "VERTICAL")[trial % 3]
        c.shift_x, c.shift_y = rng.uniform(-0.4, 0.4, size=2)
        r = scene.render
        r.resolution_x, r.resolution_y = (int(v) for v in rng.choice([64, 120, 200, 320, 480], size=2) * 4)
        r.resolution_percentage = int(rng.choice([25, 50, 75, 100, 150]))
        r.pixel_aspect_x, r.pixel_aspect_y = rng.choice([1.0, 1.0, 2.0, 1.5], size=2)
        cam.location = rng.uniform(-5, 5, size=3)
        cam.rotation_euler = rng.uniform(-math.pi, math.pi, size=3)
        cam.scale = rng.uniform(0.3, 3.0, size=3)  # scale must be removed
        samples = scene_camera.read_camera(bpy.context, 1, 3, 3)
        assert samples.K.shape == (3, 3, 3) and samples.c2w.shape == (3, 4, 4)
        R = samples.c2w[0, :3, :3]
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-6)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)
        _assert_matches_blender(bpy, aa, scene, samples, rng)


def test_opencv_axes_convention(ext, aa, bpy_module):
    """A camera at the origin with no rotation looks down world -Z with +Y up: in OpenCV axes its
    x is world +X, y is world -Y and z (forward) is world -Z; a point to world +X lands right of centre."""
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    camera = aa("blender_animate.camera")
    _camera(bpy, scene)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 200, 100, 100
    s = scene_camera.read_camera(bpy.context, 1, 2, 2)
    np.testing.assert_allclose(s.c2w[0, :3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-7)
    np.testing.assert_allclose(s.K[0, :2, 2], [100.0, 50.0])
    uv, z = camera.project_points(np.array([[1.0, 0.5, -10.0]]), s.c2w[0], s.K[0])
    assert uv[0, 0] > 100.0 and uv[0, 1] < 50.0 and z[0] == pytest.approx(10.0)


def test_parented_to_animated_empty_with_subframes(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    empty = bpy.data.objects.new("Rig", None)
    scene.collection.objects.link(empty)
    for frame, loc, rot in ((1, (0, 0, 0), (0, 0, 0)), (10, (4, -2, 1), (0.3, 0.2, 1.2))):
        empty.location, empty.rotation_euler = loc, rot
        empty.keyframe_insert("location", frame=frame)
        empty.keyframe_insert("rotation_euler", frame=frame)
    empty.scale = (2.0, 2.0, 2.0)
    cam = _camera(bpy, scene)
    cam.parent = empty
    cam.location = (0.5, -3.0, 1.0)
    cam.rotation_euler = (1.2, 0.0, 0.3)
    cam.delta_location = (0.1, 0.2, 0.0)
    scene.render.resolution_x, scene.render.resolution_y = 320, 240
    samples = scene_camera.read_camera(bpy.context, 1, 10, 19)  # 19 samples over 10 frames: sub-frames
    assert samples.times[1] == pytest.approx(1.5)
    # The camera really moves.
    assert np.linalg.norm(samples.c2w[-1, :3, 3] - samples.c2w[0, :3, 3]) > 3.0
    assert scene.frame_current == 1  # the current frame is restored
    _assert_matches_blender(bpy, aa, scene, samples, np.random.default_rng(1))


def test_track_to_constraint_and_animated_lens(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    target = bpy.data.objects.new("Target", None)
    scene.collection.objects.link(target)
    target.location = (0, 0, 0)
    target.keyframe_insert("location", frame=1)
    target.location = (3, 2, 1)
    target.keyframe_insert("location", frame=20)
    cam = _camera(bpy, scene)
    cam.location = (6, -6, 3)
    con = cam.constraints.new("TRACK_TO")
    con.target = target
    con.track_axis, con.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
    cam.data.lens = 20.0
    cam.data.keyframe_insert("lens", frame=1)
    cam.data.lens = 80.0
    cam.data.keyframe_insert("lens", frame=20)
    cam.data.shift_x = 0.1
    cam.data.keyframe_insert("shift_x", frame=1)
    cam.data.shift_x = -0.2
    cam.data.keyframe_insert("shift_x", frame=20)
    scene.render.resolution_x, scene.render.resolution_y = 256, 144
    samples = scene_camera.read_camera(bpy.context, 1, 20, 20)
    fx = samples.K[:, 0, 0]
    assert fx[-1] == pytest.approx(4 * fx[0]) and np.all(np.diff(fx) > 0)
    # The camera keeps looking at the target: it lands on the (shifted) principal point.
    camera = aa("blender_animate.camera")
    for i, t in enumerate(samples.times):
        scene.frame_set(int(t))
        uv, _ = camera.project_points(
            np.array([tuple(target.matrix_world.translation)]), samples.c2w[i], samples.K[i]
        )
        np.testing.assert_allclose(uv[0], samples.K[i, :2, 2], atol=1e-3)  # on the optical axis
    _assert_matches_blender(bpy, aa, scene, samples, np.random.default_rng(2))


def test_camera_errors(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    with pytest.raises(scene_camera.SceneCameraError, match="no active camera"):
        scene_camera.read_camera(bpy.context, 1, 10, 10)
    cam = _camera(bpy, scene)
    with pytest.raises(scene_camera.SceneCameraError, match="end frame after the start"):
        scene_camera.read_camera(bpy.context, 5, 5, 10)
    with pytest.raises(scene_camera.SceneCameraError, match="at least 2"):
        scene_camera.read_camera(bpy.context, 1, 5, 1)
    for kind in ("ORTHO", "PANO"):
        cam.data.type = kind
        with pytest.raises(scene_camera.SceneCameraError, match="Perspective"):
            scene_camera.read_camera(bpy.context, 1, 10, 10)
    cam.data.type = "PERSP"
    scene.camera = bpy.data.objects.new("NotACamera", None)
    scene.collection.objects.link(scene.camera)
    with pytest.raises(scene_camera.SceneCameraError, match="set a camera object"):
        scene_camera.read_camera(bpy.context, 1, 10, 10)
    scene.camera = cam
    cam.scale = (1.0, 0.0, 1.0)
    with pytest.raises(scene_camera.SceneCameraError, match="zero scale"):
        scene_camera.read_camera(bpy.context, 1, 10, 10)


def test_49_frames_each_sample_its_own_frame(ext, aa, bpy_module):
    """49 samples over frames 1..49: every sample is the camera at its own frame (not the first or
    last one repeated). Speed is measured in benchmarks/bench_scene_read.py, not asserted here."""
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    cam = _camera(bpy, scene)
    for frame in (1, 49):
        cam.location = (frame * 0.1, 0, 0)
        cam.keyframe_insert("location", frame=frame)
    samples = scene_camera.read_camera(bpy.context, 1, 49, 49)
    assert samples.c2w.shape == (49, 4, 4) and samples.K.shape == (49, 3, 3)
    np.testing.assert_array_equal(samples.times, np.arange(1, 50))
    expected = []
    for frame in range(1, 50):
        scene.frame_set(frame)
        expected.append(tuple(cam.matrix_world.translation))
    np.testing.assert_allclose(samples.c2w[:, :3, 3], expected, atol=1e-5)
    assert samples.c2w[0, 0, 3] == pytest.approx(0.1, abs=1e-5)
    assert samples.c2w[-1, 0, 3] == pytest.approx(4.9, abs=1e-5)
    assert np.all(np.diff(samples.c2w[:, 0, 3]) > 0)  # a new position at every frame
    axes = np.broadcast_to(np.diag([1.0, -1.0, -1.0]), (49, 3, 3))  # no rotation: Blender -> OpenCV axes
    np.testing.assert_allclose(samples.c2w[:, :3, :3], axes)
    np.testing.assert_array_equal(samples.K, np.broadcast_to(samples.K[0], (49, 3, 3)))


def test_camera_switch_from_markers_warns(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    first = _camera(bpy, scene, "First")
    second = _camera(bpy, scene, "Second")
    second.location = (0.0, 0.0, 5.0)
    scene.camera = first
    scene.timeline_markers.new("a", frame=1).camera = first
    scene.timeline_markers.new("b", frame=5).camera = second
    samples = scene_camera.read_camera(bpy.context, 1, 9, 9)
    assert samples.camera_names == ["First"] * 4 + ["Second"] * 5
    assert samples.c2w[4, 2, 3] == pytest.approx(5.0) and samples.c2w[3, 2, 3] == pytest.approx(0.0)
    assert any("First -> Second" in w for w in samples.warnings)


def test_sheared_and_mirrored_cameras_give_rotations(ext, aa, bpy_module):
    """A camera under a rotated, non-uniformly scaled parent (shear) on some frames only, and a
    negatively scaled one: every c2w keeps a proper rotation (orthonormal, det +1), the sheared
    frames are reported, and the mirror is reported and is exactly Blender's image flipped
    left-right on the frames without shear."""
    bpy = bpy_module
    _, scene = ext
    scene_camera = aa("operators.adapter.scene_camera")
    cam = _camera(bpy, scene)
    cam.location = (0.5, -6, 1)
    cam.rotation_euler = (math.radians(80), 0, math.radians(5))
    cam.scale = (-1, 1, 1)
    parent = bpy.data.objects.new("P", None)
    scene.collection.objects.link(parent)
    cam.parent = parent
    parent.rotation_euler = (0, 0, math.radians(30))
    for frame, sx in ((1, 1.0), (5, 1.0), (9, 3.0)):  # shear appears only towards the end
        parent.scale = (sx, 1, 1)
        parent.keyframe_insert("scale", frame=frame)
    samples = scene_camera.read_camera(bpy.context, 1, 9, 9)
    R = samples.c2w[:, :3, :3]
    assert np.allclose(R.transpose(0, 2, 1) @ R, np.eye(3), atol=1e-6)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert any("sheared" in w for w in samples.warnings)
    assert any("negative scale" in w for w in samples.warnings)
    # Frames 1-5 have no shear: there the projection is Blender's, mirrored (u -> W - u).
    rng = np.random.default_rng(7)
    for i in range(5):
        scene.frame_set(int(samples.times[i]))
        X = _points_in_view(rng, samples.c2w[i], samples.K[i], samples.width, samples.height)
        uv = aa("blender_animate.camera").project_points(X, samples.c2w[i], samples.K[i])[0]
        ref, _ = _blender_pixels(bpy, scene, cam, X, samples.width, samples.height)
        ref[:, 0] = samples.width - ref[:, 0]
        assert np.abs(uv - ref).max() < 5e-3
