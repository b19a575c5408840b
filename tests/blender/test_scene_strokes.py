"""Drag strokes from grease pencil v3 and annotations -> pixel tracks, region masks and warnings."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender

W, H = 64, 48


def _setup(bpy, scene, aa, frame_end=9):
    """Camera at the origin looking down -Z, render 64x48; scene range 1..frame_end."""
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    scene.frame_start, scene.frame_end = 1, frame_end
    samples = aa("operators.adapter.scene_camera").read_camera(bpy.context, 1, frame_end, frame_end)
    return samples


def _gp_object(bpy, aa, name="Drags"):
    compat = aa("operators.adapter.compat")
    gpd = compat.grease_pencil_data().new(name)
    ob = bpy.data.objects.new(name, gpd)
    bpy.context.scene.collection.objects.link(ob)
    mat = bpy.data.materials.new(name + "Stroke")
    bpy.data.materials.create_gpencil_data(mat)
    gpd.materials.append(mat)
    return ob


def _add_strokes(drawing, strokes, radius=None, delta_time=None, cyclic=None, material_index=None):
    """Append strokes (list of (N_i,3) layer-space points) to a drawing, with optional attributes."""
    first_point = len(drawing.attributes["position"].data) if len(drawing.strokes) else 0
    first_curve = len(drawing.strokes)
    drawing.add_strokes([len(s) for s in strokes])
    pos = np.empty(len(drawing.attributes["position"].data) * 3, np.float32)
    drawing.attributes["position"].data.foreach_get("vector", pos)
    pos = pos.reshape(-1, 3)
    pos[first_point:] = np.concatenate(strokes)
    drawing.attributes["position"].data.foreach_set("vector", pos.ravel())

    def put(name, dtype, domain, values, start):
        attr = drawing.attributes.get(name) or drawing.attributes.new(name, dtype, domain)
        buf = np.empty(
            len(attr.data), np.float32 if dtype == "FLOAT" else (bool if dtype == "BOOLEAN" else np.int32)
        )
        attr.data.foreach_get("value", buf)
        buf[start:] = np.concatenate([np.atleast_1d(v) for v in values])
        attr.data.foreach_set("value", buf)

    if radius is not None:
        put("radius", "FLOAT", "POINT", radius, first_point)
    if delta_time is not None:
        put("delta_time", "FLOAT", "POINT", delta_time, first_point)
    if cyclic is not None:
        put("cyclic", "BOOLEAN", "CURVE", cyclic, first_curve)
    if material_index is not None:
        put("material_index", "INT", "CURVE", material_index, first_curve)


def _project(aa, X, samples):
    uv, _ = aa("blender_animate.camera").project_points(np.asarray(X, float), samples.c2w[0], samples.K[0])
    return uv


def test_grease_pencil_world_space_tracks_and_radius(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    ob.location = (0.3, -0.2, -8.0)
    ob.rotation_euler = (0.0, 0.0, 0.4)
    ob.scale = (2.0, 2.0, 2.0)
    layer = ob.data.layers.new("Drag")
    layer.translation = (0.1, 0.2, 0.5)
    layer.rotation = (0.2, 0.0, 0.1)
    drawing = layer.frames.new(1).drawing
    local = [
        np.array([[-0.5, 0.0, 0.0], [-0.2, 0.1, 0.0], [0.4, 0.3, 0.0]]),
        np.array([[0.0, -0.5, 0.0], [0.1, 0.4, 0.0]]),
    ]
    _add_strokes(drawing, local, radius=[np.full(3, 0.05), np.full(2, 0.1)])
    bpy.context.view_layer.update()
    M = np.array(ob.matrix_world) @ np.array(layer.matrix_local)
    world = [p @ M[:3, :3].T + M[:3, 3] for p in local]

    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 9)
    assert warnings == [] and len(strokes) == 2
    np.testing.assert_allclose(strokes[0].points, world[0], atol=1e-5)
    drags = strokes_mod.strokes_to_drags(strokes, samples.c2w[0], samples.K[0], W, H, samples.times)
    assert drags.tracks.shape == (2, 9, 2) and drags.track_visible.shape == (2, 9)
    for p, X in enumerate(world):
        uv = _project(aa, X, samples)
        np.testing.assert_allclose(drags.tracks[p, 0], uv[0], atol=1e-3)
        np.testing.assert_allclose(drags.tracks[p, -1], uv[-1], atol=1e-3)
    # Radius: the Drag Radius share of the image diagonal (8 % by default), not the point radius.
    np.testing.assert_allclose(drags.track_radius, [0.08 * np.hypot(W, H)] * 2, rtol=1e-6)
    wide = strokes_mod.strokes_to_drags(
        strokes, samples.c2w[0], samples.K[0], W, H, samples.times, drag_radius=0.25
    )
    np.testing.assert_allclose(wide.track_radius, [0.25 * np.hypot(W, H)] * 2, rtol=1e-6)
    assert drags.start_depth == pytest.approx(np.median([-world[0][0, 2], -world[1][0, 2]]), rel=1e-5)
    # No object picked: every visible grease pencil object's visible layers.
    other = _gp_object(bpy, aa, "Other")
    _add_strokes(other.data.layers.new("L").frames.new(1).drawing, [np.array([[0, 0, -4.0], [0.1, 0, -4.0]])])
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", None, "", 1, 9)
    assert len(strokes) == 3 and warnings == []
    assert sorted(s.label.split("'")[1] for s in strokes) == ["Drags", "Drags", "Other"]


def test_timing_and_later_keyframe(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa, frame_end=9)
    strokes_mod = aa("operators.adapter.scene_strokes")
    tracks_mod = aa("blender_animate.tracks")
    ob = _gp_object(bpy, aa)
    layer = ob.data.layers.new("L")
    first = np.array([[-1.0, 0.0, -10.0], [0.0, 0.0, -10.0], [1.0, 0.0, -10.0]])
    times = np.array([0.0, 0.1, 1.0])  # fast, then slow
    _add_strokes(layer.frames.new(1).drawing, [first], delta_time=[times])
    later = layer.frames.new(5).drawing
    second = np.array([[0.0, -1.0, -10.0], [0.0, 1.0, -10.0]])
    _add_strokes(later, [first, second], delta_time=[times, np.zeros(2)])  # `first` carried over

    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "L", 1, 9)
    assert len(strokes) == 2 and warnings == []  # the carried-over copy counts once
    even = strokes_mod.strokes_to_drags(
        strokes, samples.c2w[0], samples.K[0], W, H, samples.times, "ARC_LENGTH"
    )
    timed = strokes_mod.strokes_to_drags(
        strokes, samples.c2w[0], samples.K[0], W, H, samples.times, "RECORDED"
    )
    uv = _project(aa, first, samples)
    np.testing.assert_allclose(even.tracks[0], tracks_mod.resample_stroke(uv, 9), atol=1e-3)
    np.testing.assert_allclose(timed.tracks[0], tracks_mod.resample_stroke(uv, 9, times=times), atol=1e-3)
    assert timed.tracks[0, 1, 0] > even.tracks[0, 1, 0] + 1.0  # drawn fast at first: ahead early on
    # The stroke drawn on frame 5 holds still until job frame 4 (scene frame 5), then moves.
    uv2 = _project(aa, second, samples)
    np.testing.assert_allclose(even.tracks[1, :5], np.repeat(uv2[:1], 5, axis=0), atol=1e-3)
    assert abs(even.tracks[1, 5, 1] - uv2[0, 1]) > 0.5
    np.testing.assert_allclose(even.tracks[1, -1], uv2[-1], atol=1e-3)
    assert any("no drawing times" in w for w in timed.warnings)  # the second stroke has none

    # With 17 samples over 9 frames, frame 5 is sample 8.
    times17 = np.linspace(1, 9, 17)
    d17 = strokes_mod.strokes_to_drags(strokes, samples.c2w[0], samples.K[0], W, H, times17)
    np.testing.assert_allclose(d17.tracks[1, :9], np.repeat(uv2[:1], 9, axis=0), atol=1e-3)
    assert abs(d17.tracks[1, 9, 1] - uv2[0, 1]) > 0.1


def test_closed_and_filled_strokes_are_region_masks(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    fill = bpy.data.materials.new("Fill")
    bpy.data.materials.create_gpencil_data(fill)
    fill.grease_pencil.show_fill = True
    ob.data.materials.append(fill)
    layer = ob.data.layers.new("L")
    square = np.array([[-1.0, -1.0, -10.0], [1.0, -1.0, -10.0], [1.0, 1.0, -10.0], [-1.0, 1.0, -10.0]])
    drag = np.array([[0.0, 0.0, -10.0], [0.5, 0.0, -10.0]])
    _add_strokes(
        layer.frames.new(1).drawing,
        [square, square * [0.5, 0.5, 1.0], drag],
        cyclic=[True, False, False],
        material_index=[0, 1, 0],
    )
    strokes, _ = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 9)
    drags = strokes_mod.strokes_to_drags(strokes, samples.c2w[0], samples.K[0], W, H, samples.times)
    assert drags.tracks.shape[0] == 1 and drags.region_masks.shape == (2, H, W)
    polygon_mask = aa("blender_animate.tracks").polygon_mask
    uv = _project(aa, square, samples)
    side = uv[1, 0] - uv[0, 0]
    assert drags.region_masks[0].sum() == pytest.approx(side * side, rel=0.1)
    np.testing.assert_array_equal(drags.region_masks[0], polygon_mask(uv, H, W))
    np.testing.assert_array_equal(
        drags.region_masks[1], polygon_mask(_project(aa, square * [0.5, 0.5, 1], samples), H, W)
    )
    cx, cy = (int(v) for v in _project(aa, drag, samples)[0])
    assert drags.region_masks[0][cy, cx] and drags.region_masks[1][cy, cx] and not drags.region_masks[0][0, 0]


def test_bad_strokes_warn_not_crash(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    layer = ob.data.layers.new("L")
    ob.data.layers.new("Empty").frames.new(1)
    hidden = ob.data.layers.new("Hidden")
    hidden.hide = True
    _add_strokes(hidden.frames.new(1).drawing, [np.array([[0.0, 0.0, -5.0], [0.1, 0.0, -5.0]])])
    _add_strokes(
        layer.frames.new(1).drawing,
        [
            np.array([[100.0, 0.0, -5.0], [101.0, 0.0, -5.0]]),  # far right: off-screen
            np.array([[0.0, 0.0, 5.0], [0.1, 0.0, 5.0]]),  # behind the camera
            np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -5.0]]),  # crosses the camera plane
            np.array([[0.1, 0.1, -5.0]]),  # a single point: a pin
            np.array([[0.0, 0.0, -5.0], [0.2, 0.0, -5.0]]),  # fine
        ],
    )
    _add_strokes(
        layer.frames.new(20).drawing, [np.array([[0.0, 0.3, -5.0], [0.2, 0.3, -5.0]])]
    )  # after the range
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 9)
    assert any("'Empty'" in w and "no strokes" in w for w in warnings)
    assert len(strokes) == 5  # hidden layer and the keyframe after the range are not read
    drags = strokes_mod.strokes_to_drags(strokes, samples.c2w[0], samples.K[0], W, H, samples.times)
    text = "\n".join(drags.warnings)
    assert "entirely outside the camera's view" in text
    assert text.count("behind the camera") == 2
    assert "single point" in text
    assert drags.tracks.shape == (2, 9, 2)
    np.testing.assert_allclose(drags.tracks[0, 0], drags.tracks[0, -1])  # the pin does not move
    with pytest.raises(strokes_mod.DragSourceError, match="no layer 'Nope'"):
        strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "Nope", 1, 9)
    # No grease pencil anywhere visible / no annotations: a warning and no tracks.
    ob.hide_set(True)
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", None, "", 1, 9)
    assert strokes == [] and "no visible grease pencil" in warnings[0]
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "ANNOTATION", None, "", 1, 9)
    assert strokes == [] and "no annotations" in warnings[0]


def test_annotation_strokes(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    compat = aa("operators.adapter.compat")
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    points = [
        {"name": "", "location": (0, 0, 0), "mouse": (region.width // 2 + 8 * i, region.height // 2),
         "mouse_event": (0, 0), "pressure": 1.0, "size": 0, "x_tilt": 0.0, "y_tilt": 0.0, "time": 0.1 * i,
         "is_start": i == 0}
        for i in range(6)
    ]  # fmt: skip
    with bpy.context.temp_override(window=window, area=area, region=region, screen=window.screen):
        bpy.ops.gpencil.annotate(mode="DRAW", wait_for_input=False, stroke=points)
    ann = compat.scene_annotation(scene)
    co = np.array([tuple(p.co) for p in ann.layers[0].frames[0].strokes[0].points])
    # Place the camera so that the annotation is in view, 10 units in front of its first point.
    cam = scene.camera
    cam.location = co.mean(axis=0) + np.array([0.0, 0.0, 10.0])
    bpy.context.view_layer.update()
    samples = aa("operators.adapter.scene_camera").read_camera(bpy.context, 1, 9, 9)
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "ANNOTATION", None, "", 1, 9)
    assert warnings == [] and len(strokes) == 1 and strokes[0].radius is None
    drags = strokes_mod.strokes_to_drags(strokes, samples.c2w[0], samples.K[0], W, H, samples.times)
    uv = _project(aa, co, samples)
    np.testing.assert_allclose(drags.tracks[0, 0], uv[0], atol=1e-3)
    np.testing.assert_allclose(drags.tracks[0, -1], uv[-1], atol=1e-3)
    assert drags.track_radius[0] == pytest.approx(0.08 * np.hypot(W, H))


def test_100_strokes_of_50_points_become_tracks(ext, aa, bpy_module):
    """100 strokes x 50 points (evenly timed straight lines at one depth) over 49 frames: each track is
    its stroke's projection, start to end, at the recorded pace. Speed is measured in
    benchmarks/bench_scene_read.py, not asserted here."""
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa, frame_end=49)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    rng = np.random.default_rng(0)
    start = np.column_stack([rng.uniform(-2, 2, 100), rng.uniform(-1.5, 1.5, 100), np.full(100, -10.0)])
    direction = rng.uniform(-1, 1, (100, 1, 3)) * [1, 1, 0]
    steps = np.linspace(0.0, 1.0, 50)[None, :, None] * direction
    strokes_pts = list(start[:, None, :] + steps)
    _add_strokes(
        ob.data.layers.new("L").frames.new(1).drawing,
        strokes_pts,
        delta_time=[np.linspace(0, 1, 50)] * 100,
    )
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 49)
    assert len(strokes) == 100 and warnings == []
    assert all(s.points.shape == (50, 3) and s.times is not None for s in strokes)
    drags = strokes_mod.strokes_to_drags(
        strokes, samples.c2w[0], samples.K[0], W, H, samples.times, "RECORDED"
    )
    assert drags.tracks.shape == (100, 49, 2) and drags.track_visible.shape == (100, 49)
    assert drags.num_strokes == 100 and drags.warnings == []
    # At frame f of 0..48 the content is at time f / 48 of its stroke: start + f / 48 * direction.
    # Every stroke lies at depth 10, so projecting is affine and the track is exactly that point's pixel.
    t = np.arange(49) / 48.0
    world = start[:, None, :] + t[None, :, None] * direction  # (100, 49, 3)
    expected = _project(aa, world.reshape(-1, 3), samples).reshape(100, 49, 2)
    np.testing.assert_allclose(drags.tracks, expected, atol=2e-3)
    u, v = expected[..., 0], expected[..., 1]
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    np.testing.assert_array_equal(drags.track_visible, inside)
    assert drags.start_depth == pytest.approx(10.0, rel=1e-5)


def test_layer_parented_to_another_object(ext, aa, bpy_module):
    """A layer parented to an (animated) empty follows the empty, not the grease pencil object."""
    bpy = bpy_module
    _, scene = ext
    _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    ob.location = (5.0, 5.0, 5.0)  # must not matter
    empty = bpy.data.objects.new("Handle", None)
    scene.collection.objects.link(empty)
    empty.location = (0.2, 0.1, -6.0)
    empty.keyframe_insert("location", frame=1)
    empty.location = (3.0, 3.0, -6.0)
    empty.keyframe_insert("location", frame=9)
    layer = ob.data.layers.new("L")
    layer.parent = empty
    pts = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
    _add_strokes(layer.frames.new(1).drawing, [pts])
    scene.frame_set(5)  # strokes are read at the range's first frame, whatever the current one
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "L", 1, 9)
    assert warnings == [] and scene.frame_current == 5
    np.testing.assert_allclose(strokes[0].points, pts + [0.2, 0.1, -6.0], atol=1e-5)


def test_a_nan_stroke_is_named_and_skipped(ext, aa, bpy_module):
    """A stroke with a NaN point (set by a script or driver) is a warning naming that stroke, not
    an export refused for "tracks holds NaN" (issue 10, case 12); NaN drawing times fall back to
    constant speed, named too."""
    bpy = bpy_module
    _, scene = ext
    samples = _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    layer = ob.data.layers.new("L")
    good = np.array([[0.0, 0.0, -5.0], [0.2, 0.0, -5.0]])
    nan = np.array([[0.1, 0.1, -5.0], [np.nan, 0.1, -5.0], [0.3, 0.1, -5.0]])
    _add_strokes(layer.frames.new(1).drawing, [good, nan], delta_time=[0.0, np.nan, 0.0, 0.1, 0.2])
    strokes, _ = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 9)
    drags = strokes_mod.strokes_to_drags(
        strokes, samples.c2w[0], samples.K[0], W, H, samples.times, "RECORDED"
    )
    text = "\n".join(drags.warnings)
    assert "'Drags' layer 'L' frame 1 stroke 2 has 1 of its 3 points at NaN or infinite coordinates" in text
    assert drags.tracks.shape == (1, 9, 2) and np.isfinite(drags.tracks).all()
    # Drawing times with a NaN (a stroke made by a script): constant speed, and the stroke is named.
    timed = strokes_mod.WorldStroke(good, None, np.array([0.0, np.nan]), 1, False, "stroke 'S'")
    c2w0, K0 = samples.c2w[0], samples.K[0]
    drags = strokes_mod.strokes_to_drags([timed], c2w0, K0, W, H, samples.times, "RECORDED")
    assert "stroke 'S' has NaN or infinite drawing times: it moves at constant speed" in drags.warnings
    assert np.isfinite(drags.tracks).all()


def test_a_curve_without_points_is_a_warning_not_a_failed_export(ext, aa, bpy_module):
    """Another tool (or a script writing curve_offsets) can leave a curve with no points: the other
    strokes are still read, and the empty one is named in a warning."""
    bpy = bpy_module
    _, scene = ext
    _setup(bpy, scene, aa)
    strokes_mod = aa("operators.adapter.scene_strokes")
    ob = _gp_object(bpy, aa)
    drawing = ob.data.layers.new("L").frames.new(1).drawing
    _add_strokes(drawing, [np.array([[0.0, 0.0, -5.0], [0.1, 0.0, -5.0]]), np.array([[0.2, 0.0, -5.0]] * 3)])
    drawing.curve_offsets.foreach_set("value", np.array([0, 0, 5], np.int32))  # curve 1: no points
    assert [len(s.points) for s in drawing.strokes] == [0, 5]
    strokes, warnings = strokes_mod.collect_strokes(bpy.context, "GREASE_PENCIL", ob, "", 1, 9)
    assert len(strokes) == 1 and len(strokes[0].points) == 5
    assert "'Drags' layer 'L' frame 1 stroke 1 has no points: skipped" in warnings
