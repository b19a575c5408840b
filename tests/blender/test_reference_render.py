"""Generate's reference render in a background Blender (operators/adapter/reference_job.py): the
modal keeps ticking while it renders, Esc stops it and changes nothing, the drag strokes never
appear in it; and after an import F12 still renders the 3D scene, not the strip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.blender import scene_kit as kit
from tests.blender.conftest import submodule
from tests.blender.snapshot import assert_unchanged, data_snapshot
from tests.jobfiles import generate_job

pytestmark = pytest.mark.blender


def runs():
    return submodule("operators.adapter.runs")


@pytest.fixture
def shot(ext, bpy_module, tmp_path):
    """A camera at the origin looking down -Z at a lit white plane, a grease pencil drag (a thick
    black square) in front of it, Generate set to render the reference (preview mode, 9 frames)."""
    bpy = bpy_module
    _, scene = ext
    compat = submodule("operators.adapter.compat")
    cam = kit.add_camera(bpy, scene)
    mesh = bpy.data.meshes.new("Plane")
    mesh.from_pydata([(-3, -3, -5), (3, -3, -5), (3, 3, -5), (-3, 3, -5)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("Plane", mesh))
    gp, gpd = kit.add_drag_object(bpy, scene, compat)
    drawing = gpd.layers.new("L").frames.new(1).drawing
    drawing.add_strokes([5])
    square = np.array([(-0.4, -0.4), (0.4, -0.4), (0.4, 0.4), (-0.4, 0.4), (-0.4, -0.4)], np.float32)
    points = np.column_stack([square, np.full(5, -3.0, np.float32)])
    kit.set_stroke_points(drawing, points, radius=0.08)
    kit.flat_workbench(scene, 64, 48, "SINGLE")
    scene.display.shading.single_color = (1.0, 1.0, 1.0)
    scene.frame_start, scene.frame_end = 1, 9
    s = scene.animate_anything
    s.width, s.height, s.num_frames = 64, 48, 9
    s.reference_source = "RENDER"
    s.drag_source = "GREASE_PENCIL"
    s.drag_object = gp
    s.mode = "preview"
    s.output_dir = str(tmp_path / "jobs")
    cam.keyframe_insert("location", frame=1)
    cam.location.x += 0.3
    cam.keyframe_insert("location", frame=9)
    scene.frame_set(1)
    yield scene
    runs().stop_active_run()


def _stroke_pixels(rgb: np.ndarray) -> int:
    """Dark pixels: the plane renders white, the stroke black."""
    return int((rgb.max(axis=-1) < 100).sum())


def test_the_drag_stroke_is_absent_from_the_reference(shot, bpy_module):
    bpy = bpy_module
    reference = submodule("operators.adapter.reference")
    job = submodule("operators.adapter.reference_job")
    drags = reference.drag_objects(bpy.context, shot.animate_anything)
    assert [ob.name for ob in drags] == ["Drags"]
    # The control: the same render with nothing hidden shows the stroke.
    shown = job.ReferenceRender(bpy.context, 1, 64, 48, quality="FINAL").start()
    try:
        assert _stroke_pixels(shown.wait(timeout=120).rgb) > 40
    finally:
        shown.close()
    hidden = job.ReferenceRender(bpy.context, 1, 64, 48, quality="PREVIEW", hide=drags).start()
    try:
        rendered = hidden.wait(timeout=120)
    finally:
        hidden.close()
    assert _stroke_pixels(rendered.rgb) == 0
    assert rendered.rgb.min() > 150 and np.allclose(rendered.depth[10:38, 10:54], 5.0, rtol=1e-3)
    assert not bpy.data.objects["Drags"].hide_render, "the artist's object is left as it was"
    assert not hidden.folder.exists(), "the temporary copy is removed"


def test_in_this_process_too_the_drags_are_hidden_and_restored(shot, bpy_module):
    bpy = bpy_module
    reference = submodule("operators.adapter.reference")
    drags = reference.drag_objects(bpy.context, shot.animate_anything)
    rgb, _, _, _ = reference.render_reference(bpy.context, 1, 64, 48, quality="PREVIEW", hide=drags)
    assert _stroke_pixels(rgb) == 0 and not bpy.data.objects["Drags"].hide_render


def test_the_modal_keeps_ticking_while_the_reference_renders(shot, bpy_module, tmp_path):
    bpy = bpy_module
    before_render = shot.render.resolution_percentage
    standby = submodule("blender_animate.addon.standby")
    standby.stop()
    run = runs().start_run(bpy.context)
    assert run.render is not None and run.process is None and run.render.running
    waiting = standby.current()  # a generator warms up while the reference renders
    assert waiting is not None
    ticks_during_render = 0
    deadline = time.monotonic() + 120
    while not run.finished and not run.ready_to_import and time.monotonic() < deadline:
        rendering = run.process is None
        interval = run.tick()
        assert runs().modal_step(run, "MOUSEMOVE", "NOTHING") in ({"PASS_THROUGH"}, {"FINISHED"})
        if rendering and run.process is None:
            ticks_during_render += 1
            assert interval == runs().POLL_INTERVAL and run.stage.startswith("reference")
        time.sleep(0.02)
    assert ticks_during_render >= 3, "the modal was polled while the background Blender rendered"
    assert run.state == "done", run.full_message()
    assert run.process.warm and run.process.proc is waiting
    job_dir = Path(run.job_dir)
    assert job_dir.parent == tmp_path / "jobs" and (job_dir / "reference.png").is_file()
    from PIL import Image

    ref = np.asarray(Image.open(job_dir / "reference.png"))
    assert _stroke_pixels(ref) == 0, "the drag is not in the reference"
    assert (job_dir / "depth.npy").is_file() and shot.render.resolution_percentage == before_render
    assert "AA " + job_dir.name in shot.sequence_editor.strips


def test_esc_during_the_reference_render_stops_it_and_changes_nothing(shot, bpy_module, tmp_path):
    bpy = bpy_module
    before = data_snapshot()
    run = runs().start_run(bpy.context)
    proc = run.render.proc
    assert run.tick() == runs().POLL_INTERVAL and proc.poll() is None, "the render is under way"
    assert runs().modal_step(run, "ESC", "PRESS") == {"RUNNING_MODAL"}
    assert run.state == "cancelled" and "reference render" in run.message
    assert proc.poll() is not None, "the background Blender is gone"
    assert runs().modal_step(run, "TIMER", "NOTHING") == {"CANCELLED"}
    assert not run.render.folder.exists()
    assert not list((tmp_path / "jobs").glob("*")), "no job folder was written"
    assert_unchanged(before, data_snapshot())
    assert not bpy.data.objects["Drags"].hide_render


def test_invalid_settings_are_refused_before_any_render(shot, bpy_module):
    bpy = bpy_module
    shot.animate_anything.width = 60
    with pytest.raises(runs().GenerateError, match="multiple of 8"):
        runs().start_run(bpy.context)
    assert runs().active_run() is None or runs().active_run().render is None


def test_f12_renders_the_scene_after_an_import(shot, bpy_module, tmp_path):
    bpy = bpy_module
    importer = submodule("operators.adapter.result_import")
    shot.animate_anything.drag_object.hide_render = True

    def f12(name):
        path = tmp_path / f"{name}.png"
        shot.render.filepath = str(path)
        shot.render.image_settings.file_format = "PNG"
        bpy.ops.render.render(write_still=True)
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)

    before = f12("before")
    job = generate_job(tmp_path / "shot", width=64, height=48, num_frames=9)
    importer.import_result(bpy.context, job, scene=shot, strip=True, background=True)
    first = shot.sequence_editor.strips[0]
    assert first.name == "AA shot" and not first.mute
    after = f12("after")
    assert np.abs(after - before).max() <= 2, "F12 rendered the 3D scene, not the strip"
    # A second result: its background is shown, the first one's hidden.
    job2 = generate_job(tmp_path / "shot2", width=64, height=48, num_frames=9)
    importer.import_result(bpy.context, job2, scene=shot, strip=True, background=True)
    shown = {bg.image.name: bg.show_background_image for bg in shot.camera.data.background_images}
    assert shown == {"AA shot": False, "AA shot2": True}


def test_export_job_renders_in_the_background_too(shot, bpy_module, tmp_path):
    """Export Job's modal path (operators/adapter/export_run.py, polled here by hand: modal
    operators get no events in the bpy module): the reference renders in a background Blender
    while this process keeps polling, the job has it without the stroke; a cancel writes nothing."""
    bpy = bpy_module
    export_run = submodule("operators.adapter.export_run")
    before = data_snapshot()
    cancelled = export_run.ExportRun(bpy.context, tmp_path / "cancelled").start(bpy.context)
    assert not cancelled.poll() and cancelled.render.running
    cancelled.cancel()
    assert not cancelled.render.running and "nothing was written" in cancelled.error
    assert not list((tmp_path / "cancelled").glob("*"))
    run = export_run.ExportRun(bpy.context, tmp_path / "exported").start(bpy.context)
    polls, deadline = 0, time.monotonic() + 120
    while not run.poll():
        assert time.monotonic() < deadline, run.stage
        polls += 1
        time.sleep(0.02)
    assert polls >= 3, "this process kept polling while the background Blender rendered"
    assert run.error == "" and run.job_dir.parent == tmp_path / "exported"
    from PIL import Image

    ref = np.asarray(Image.open(run.job_dir / "reference.png"))
    assert _stroke_pixels(ref) == 0 and (run.job_dir / "depth.npy").is_file()
    assert_unchanged(before, data_snapshot())
    shot.animate_anything.width = 60  # refused before any render
    with pytest.raises(ValueError, match="multiple of 8"):
        export_run.ExportRun(bpy.context, tmp_path / "bad").start(bpy.context)


def test_an_incomplete_model_folder_is_refused_before_any_render(shot, bpy_module, tmp_path):
    """guided mode with a CogVideoX folder holding only model_index.json: Generate says what is
    missing at once, before a background Blender renders anything."""
    bpy = bpy_module
    prefs = submodule("operators.adapter.preferences").get_preferences(bpy.context)
    if prefs is None:
        pytest.skip("the add-on preferences are not registered")
    folder = tmp_path / "CogVideoX-5b-I2V"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    old = prefs.cogvideox_model
    s = shot.animate_anything
    s.mode, s.num_frames = "guided", 9
    try:
        prefs.cogvideox_model = str(folder)
        with pytest.raises(
            runs().GenerateError, match=r"CogVideoX model folder .* is incomplete \(missing transformer/"
        ):
            runs().start_run(bpy.context)
        assert runs().active_run() is None or runs().active_run().render is None
        assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())
    finally:
        prefs.cogvideox_model = old
