"""Submit to Farm (operators/adapter/farm.py): shots from cameras and markers, the online-access
refusal, and a real farm run (`python -m backend farm run` with its own local Ray cluster on
127.0.0.1) followed by calling the timer function directly (timers never fire in the bpy module),
each result imported as it finishes."""

from __future__ import annotations

import importlib.util
import time

import pytest

from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender


def farm():
    return submodule("operators.adapter.farm")


@pytest.fixture
def shot_scene(ext, bpy_module, tmp_path):
    """Two cameras sliding sideways over a cube, 64x48, 9 frames, rendered reference (Workbench)."""
    bpy = bpy_module
    _, scene = ext
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    scene.frame_start, scene.frame_end = 1, 9
    bpy.ops.mesh.primitive_cube_add()
    cams = []
    for i, name in enumerate(("CamA", "CamB")):
        cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(cam)
        cam.location, cam.rotation_euler = (0.3 * i, -6.0, 0.0), (1.5708, 0.0, 0.0)
        cam.keyframe_insert("location", frame=1)
        cam.location.x += 0.5
        cam.keyframe_insert("location", frame=9)
        cams.append(cam)
    scene.camera = cams[0]
    s = scene.animate_anything
    s.width, s.height, s.num_frames = 64, 48, 9
    s.reference_source, s.drag_source, s.mode = "RENDER", "NONE", "preview"
    s.output_dir = str(tmp_path / "jobs")
    scene.frame_set(1)
    prefs = submodule("operators.adapter.preferences").get_preferences(bpy.context)
    saved = (prefs.farm_address, prefs.python_path)
    prefs.python_path = ""  # the Python running the tests (it has Ray when requirements.txt is installed)
    yield scene, cams, prefs
    farm().stop_farm()
    prefs.farm_address, prefs.python_path = saved


def select(bpy, objects):
    for o in bpy.context.view_layer.objects:
        o.select_set(o in objects)


def test_shots_come_from_selected_cameras_else_marker_ranges(shot_scene, bpy_module):
    bpy = bpy_module
    scene, cams, _ = shot_scene
    select(bpy, cams)
    assert [(s.label, s.camera.name, s.start, s.end) for s in farm().shots(bpy.context)] == [
        ("CamA", "CamA", 1, 9), ("CamB", "CamB", 1, 9),
    ]  # fmt: skip
    select(bpy, [])
    scene.timeline_markers.new("intro", frame=1)
    scene.timeline_markers.new("close", frame=5).camera = cams[1]
    # Blender's binding rule: before the first bound marker, that marker's camera.
    assert [(s.label, s.camera.name, s.start, s.end) for s in farm().shots(bpy.context)] == [
        ("intro", "CamB", 1, 4), ("close", "CamB", 5, 9),
    ]  # fmt: skip
    scene.timeline_markers["intro"].camera = cams[0]
    assert [s.camera.name for s in farm().shots(bpy.context)] == ["CamA", "CamB"]
    scene.timeline_markers.clear()
    assert [s.label for s in farm().shots(bpy.context)] == [scene.name]


def test_a_remote_farm_is_refused_while_online_access_is_off(shot_scene, bpy_module, tmp_path):
    bpy = bpy_module
    _, _, prefs = shot_scene
    assert bpy.app.online_access is False  # the bpy module runs offline
    prefs.farm_address = "10.20.30.40:6379"
    with pytest.raises(farm().FarmError, match="online access is off"):
        farm().start_farm(bpy.context)
    assert not (tmp_path / "jobs").exists(), "nothing is exported when the farm is refused"
    assert bpy.ops.animate_anything.farm_submit.poll() and not bpy.ops.animate_anything.farm_cancel.poll()


@pytest.mark.slow
def test_one_job_per_camera_runs_on_the_farm_and_each_result_is_imported(shot_scene, bpy_module):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (requirements.txt installs it)")
    bpy = bpy_module
    scene, cams, prefs = shot_scene
    prefs.farm_address = ""  # a private local cluster, 127.0.0.1 only
    select(bpy, cams)
    s = scene.animate_anything
    before = (s.use_scene_range, s.frame_start, s.frame_end)
    run = farm().start_farm(bpy.context)
    assert scene.camera is cams[0] and (s.use_scene_range, s.frame_start, s.frame_end) == before
    assert sorted(run.labels.values()) == ["CamA", "CamB"] and farm().is_submitting()
    assert not bpy.ops.animate_anything.farm_submit.poll() and bpy.ops.animate_anything.farm_cancel.poll()
    seen, deadline = set(), time.monotonic() + 240
    while run.tick() is not None:
        assert time.monotonic() < deadline, run.rows()
        seen.update(stage for _, stage, _, _ in run.rows())
        time.sleep(0.05)
    assert {state for _, state, _, _ in run.rows()} == {"done"}, (run.rows(), run.message)
    assert any(s.startswith(("waiting", "on ", "flow", "render", "write")) for s in seen), seen
    assert run.message.startswith("2 done, 0 failed, 0 cancelled")
    strips = {s.name for s in scene.sequence_editor.strips}
    assert {f"AA {d.name}" for d in run.labels} <= strips
