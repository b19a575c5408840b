"""animate_anything.generate: the timer and modal logic (called directly: timers never fire and
modal operators get no events in the bpy module), with the real generator process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.blender.conftest import build_extension_zip, run_installed, submodule
from tests.blender.snapshot import assert_unchanged, data_snapshot
from tests.jobfiles import make_job

pytestmark = pytest.mark.blender


def gen():
    """The runs this Blender follows (operators/adapter/runs.py)."""
    return submodule("operators.adapter.runs")


def status(scene) -> SimpleNamespace:
    """What the sidebar shows of `scene`'s last run, read from the run state kept in memory (the
    .blend holds none)."""
    run = gen().run_for(scene)
    if run is None:
        return SimpleNamespace(
            job_running=False, job_stage="", job_progress=0.0, last_job_dir="", last_message=""
        )
    return SimpleNamespace(
        job_running=gen().is_running() and gen().active_run() is run,
        job_stage=run.stage,
        job_progress=run.fraction,
        last_job_dir=str(run.job_dir),
        last_message=run.full_message() if run.finished else "",
    )


@pytest.fixture
def world(ext, bpy_module):
    """A scene with a camera and a cube; no run left over from another test."""
    bpy = bpy_module
    _, scene = ext
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, -6.0, 0.0)
    cam.rotation_euler = (1.5708, 0.0, 0.0)
    bpy.ops.mesh.primitive_cube_add()
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    yield scene
    gen().stop_active_run()  # kills a run a failed test left behind and clears the module state


def tick_to_end(run, timeout=60.0, on_tick=None) -> list:
    intervals = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"the run did not end within {timeout} s ({run.stage})"
        interval = run.tick()
        intervals.append(interval)
        if on_tick is not None:
            on_tick(run)
        if interval is None:
            return intervals
        time.sleep(0.02)


def tick_until_started(run, timeout=30.0):
    deadline = time.monotonic() + timeout
    while run.stage == "starting":
        assert time.monotonic() < deadline
        assert run.tick() is not None, run.full_message()
        time.sleep(0.02)


def reports_of(run) -> list:
    out = []
    run.report_to(lambda level, message: out.append((next(iter(level)), message)))
    return out


def test_the_timer_follows_a_real_generator_and_imports_the_result(world, bpy_module, tmp_path):
    bpy = bpy_module
    scene = world
    # Large enough that the run spans many polls (a 9-frame 64x48 job can finish between two).
    job = make_job(tmp_path / "shot", width=256, height=192, num_frames=33)
    run = gen().run_job(bpy.context, job)
    run.start_timer()  # what the operator does with a UI (the timer never fires here)
    assert bpy.app.timers.is_registered(run.timer)
    assert gen().is_running() and status(scene).job_running
    assert not bpy.ops.animate_anything.generate.poll(), "one run at a time"
    assert bpy.ops.animate_anything.cancel.poll()
    seen = []
    assert gen().run_for(bpy.context.scene) is run
    intervals = tick_to_end(run, on_tick=lambda r: seen.append((r.stage, r.fraction)))
    assert intervals[-1] is None and set(intervals[:-1]) == {gen().POLL_INTERVAL}
    assert any(stage.startswith(("flow", "render", "write")) for stage, _ in seen), seen
    assert all(0.0 <= p <= 1.0 for _, p in seen) and any(0.0 < p for _, p in seen)
    assert run.state == "done", run.full_message()
    settings = status(bpy.context.scene)
    assert not settings.job_running and settings.job_stage == "done"
    assert settings.last_job_dir == str(job) and settings.last_message.startswith("Imported 33 frames")
    assert scene.sequence_editor.strips["AA shot"].frame_final_duration == 33
    assert scene.camera.data.background_images[0].image.name == "AA shot"
    assert not bpy.app.timers.is_registered(run.timer), "the timer is removed at the end"
    assert run.tick() is None
    assert ("INFO", run.message) in reports_of(run)
    assert not gen().is_running() and bpy.ops.animate_anything.generate.poll()


def test_esc_in_the_modal_handler_cancels_and_changes_nothing(world, bpy_module, tmp_path):
    bpy = bpy_module
    job = make_job(tmp_path / "shot", width=256, height=192, num_frames=33)
    before = data_snapshot()
    run = gen().run_job(bpy.context, job)
    tick_until_started(run)
    assert gen().modal_step(run, "MOUSEMOVE", "NOTHING") == {"PASS_THROUGH"}
    assert gen().modal_step(run, "ESC", "PRESS") == {"RUNNING_MODAL"}
    assert run.stage == "cancelling"
    tick_to_end(run, timeout=20)
    assert gen().modal_step(run, "TIMER", "NOTHING") == {"CANCELLED"}
    assert run.state == "cancelled"
    assert_unchanged(before, data_snapshot())
    assert not (job / "out").exists() and job.is_dir()
    level, message = reports_of(run)[-1]
    assert level == "WARNING" and "cancel" in message and str(job) in message
    assert not status(world).job_running


def test_the_cancel_operator_stops_the_run(world, bpy_module, tmp_path):
    bpy = bpy_module
    assert not bpy.ops.animate_anything.cancel.poll()
    job = make_job(tmp_path / "shot", width=256, height=192, num_frames=33)
    before = data_snapshot()
    run = gen().run_job(bpy.context, job)
    tick_until_started(run)
    assert bpy.ops.animate_anything.cancel() == {"FINISHED"}
    tick_to_end(run, timeout=20)
    assert run.state == "cancelled"
    assert_unchanged(before, data_snapshot())
    assert not (job / "out").exists()


def _kill(run):
    os.killpg(run.process.proc.pid, signal.SIGKILL)


def _corrupt_job(job):
    (job / "job.json").write_text('{"schema_version": 1, "mode": ')


def _unreadable_image(job):
    (job / "reference.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")


def _bad_conditions(job):
    (job / "conditions.npz").write_bytes(b"PK\x03\x04 truncated")


def _bare_python(tmp_path) -> str:
    """A fresh venv of the system Python without pip: no numpy, no Pillow."""
    base = next((p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if Path(p).exists()), None)
    if base is None:
        pytest.skip("no system python3 to make a bare venv from")
    venv = tmp_path / "bare"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    if subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 0:
        pytest.skip("the system Python's venv sees numpy")
    return python


FAILURES = {
    # name: (damage the job before the run, act during the run, python, words the message must hold)
    "killed": (None, _kill, None, ["stopped before finishing", "SIGKILL"]),
    "corrupted_job": (_corrupt_job, None, None, ["job.json", "not valid JSON"]),
    "unreadable_image": (_unreadable_image, None, None, ["reference.png"]),
    "bad_conditions": (_bad_conditions, None, None, ["conditions.npz"]),
    "missing_interpreter": (None, None, "/nonexistent/bin/python3", ["/nonexistent/bin/python3", "not"]),
    "python_without_numpy": (None, None, "bare", ["numpy"]),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_a_failure_is_reported_and_changes_nothing(world, bpy_module, tmp_path, name):
    bpy = bpy_module
    damage, act, python, words = FAILURES[name]
    if python == "bare":
        python = _bare_python(tmp_path)
    size = dict(width=256, height=192, num_frames=33) if act else dict(width=64, height=48, num_frames=9)
    job = make_job(tmp_path / "shot", **size)
    if damage is not None:
        damage(job)
    before = data_snapshot()
    run = gen().run_job(bpy.context, job, python=python)
    if act is not None:
        tick_until_started(run)
        act(run)
    tick_to_end(run)
    assert run.state == "failed", run.full_message()
    level, message = reports_of(run)[-1]
    assert level == "ERROR"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert str(job) in message, "the message says where the job folder is kept"
    assert run.hint, "every failure comes with a hint"
    assert_unchanged(before, data_snapshot())
    assert job.is_dir() and not (job / "out" / "result.json").exists()
    settings = status(world)
    assert not settings.job_running and settings.last_message == message
    assert not gen().is_running()


def test_stopping_the_active_run_kills_the_generator(world, bpy_module, tmp_path):
    """What unregister() (the add-on being disabled) does: no orphan process."""
    bpy = bpy_module
    job = make_job(tmp_path / "shot", width=256, height=192, num_frames=33)
    run = gen().run_job(bpy.context, job)
    run.start_timer()
    tick_until_started(run)
    gen().stop_active_run()
    assert run.process.proc.poll() is not None, "the generator must not outlive the add-on"
    assert gen().active_run() is None and not bpy.app.timers.is_registered(run.timer)
    # Nothing is left looking like a run in progress (issue 10, case 11).
    assert run.finished and run.state == "cancelled" and run.stage == "cancelled"
    assert not status(world).job_running and "stopped" in status(world).last_message


def test_loading_another_file_ends_the_run(world, bpy_module, tmp_path):
    bpy = bpy_module
    job = make_job(tmp_path / "shot", width=256, height=192, num_frames=33)
    run = gen().run_job(bpy.context, job)
    tick_until_started(run)
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    assert run.process.proc.poll() is not None and run.state == "cancelled"
    assert not gen().is_running()


# ----------------------------------------------------------------------------- the operator, end to end
def small_settings(scene, tmp_path):
    """64x48, 9 frames, reference rendered with Workbench (depth with 1-sample Cycles)."""
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.frame_start, scene.frame_end = 1, 9
    s = scene.animate_anything
    s.width, s.height, s.num_frames = 64, 48, 9
    s.reference_source = "RENDER"
    s.drag_source = "NONE"
    s.mode = "preview"
    s.output_dir = str(tmp_path / "jobs")
    scene.camera.keyframe_insert("location", frame=1)
    scene.camera.location.x += 0.5
    scene.camera.keyframe_insert("location", frame=9)
    scene.frame_set(1)
    return s


@pytest.fixture
def python_path(extension):
    """Set the add-on preference python_path for one test."""
    prefs = submodule("operators.adapter.preferences").get_preferences(
        extension and __import__("bpy").context
    )
    if prefs is None or not hasattr(prefs, "python_path"):
        pytest.skip("the add-on preferences are not registered")
    old = prefs.python_path

    def set_path(value):
        prefs.python_path = value

    yield set_path
    prefs.python_path = old


def test_generate_runs_synchronously_in_background_and_imports(world, bpy_module, tmp_path):
    bpy = bpy_module
    settings = small_settings(world, tmp_path)
    assert bpy.app.background
    assert bpy.ops.animate_anything.generate() == {"FINISHED"}
    settings = status(world)
    job = Path(settings.last_job_dir)
    assert job.parent == tmp_path / "jobs" and (job / "out" / "result.json").is_file()
    assert not settings.job_running and settings.last_message.startswith("Imported 9 frames")
    strip = world.sequence_editor.strips[0]
    assert strip.frame_final_duration == 9 and strip.frame_final_start == world.frame_start
    (bg,) = world.camera.data.background_images
    movie = (job / "out" / "video.mp4").is_file()  # PNG frames only where the generator has no PyAV
    assert bg.image.source == ("MOVIE" if movie else "SEQUENCE")
    assert bg.image_user.frame_duration == 9 and (not movie or bg.image.frame_duration == 9)
    assert not gen().is_running()


def test_the_preferences_interpreter_is_used_and_a_missing_one_is_reported(
    world, bpy_module, tmp_path, python_path
):
    bpy = bpy_module
    settings = small_settings(world, tmp_path)
    python_path(str(tmp_path / "nowhere" / "python3"))
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.animate_anything.generate()
    assert_unchanged(before, data_snapshot())
    settings = status(world)
    job = Path(settings.last_job_dir)
    assert job.is_dir() and (job / "job.json").is_file() and not (job / "out").exists()
    assert "job folder kept" in settings.last_message and not settings.job_running


def test_an_interpreter_without_numpy_in_the_preferences_is_reported(
    world, bpy_module, tmp_path, python_path
):
    bpy = bpy_module
    small_settings(world, tmp_path)
    python_path(_bare_python(tmp_path))
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="numpy"):
        bpy.ops.animate_anything.generate()
    assert_unchanged(before, data_snapshot())


def test_an_unreadable_reference_image_stops_before_the_generator(world, bpy_module, tmp_path):
    bpy = bpy_module
    settings = small_settings(world, tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    image = bpy.data.images.load(str(broken), check_existing=False)
    settings.reference_source = "FILE"
    settings.reference_image = image
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="Export failed"):
        bpy.ops.animate_anything.generate()
    assert_unchanged(before, data_snapshot())
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())
    assert not gen().is_running()


def test_generate_is_greyed_out_when_the_settings_cannot_export(world, bpy_module):
    bpy = bpy_module
    world.animate_anything.reference_source = "FILE"  # and no image picked
    assert not bpy.ops.animate_anything.generate.poll()
    world.camera = None
    assert not bpy.ops.animate_anything.generate.poll()


def test_with_a_window_generate_is_modal_and_the_timer_ends_it(world, bpy_module, tmp_path, monkeypatch):
    """The UI branch: the bpy module is always in background mode, so the test lifts that one check;
    the operator then returns RUNNING_MODAL at once with the timer registered, and the timer
    function (called here by hand) runs the job to the end."""
    bpy = bpy_module
    small_settings(world, tmp_path)
    assert bpy.context.window is not None
    monkeypatch.setattr(gen(), "run_synchronously", lambda context, wait: False)
    assert bpy.ops.animate_anything.generate("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
    run = gen().active_run()
    assert run is not None and not run.finished and status(world).job_running
    assert bpy.app.timers.is_registered(run.timer)
    tick_to_end(run)
    # The generator is done; the operator imports (its undo step), not the timer.
    assert run.ready_to_import and not bpy.app.timers.is_registered(run.timer)
    assert world.sequence_editor is None or not world.sequence_editor.strips
    assert gen().modal_step(run, "TIMER", "NOTHING") == {"FINISHED"}
    assert run.state == "done" and not run.ready_to_import
    assert world.sequence_editor.strips[0].frame_final_duration == 9
    assert "UNDO" in bpy.types.ANIMATE_ANYTHING_OT_generate.bl_options


def test_a_file_saved_during_a_run_opens_as_not_running(world, bpy_module, tmp_path):
    """The run state lives in memory: progress writes nothing into the scene, so a file saved
    mid-run holds none of it."""
    bpy = bpy_module
    run = gen().run_job(bpy.context, make_job(tmp_path / "shot", width=256, height=192, num_frames=33))
    tick_until_started(run)
    path = tmp_path / "saved_while_running.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    for _ in range(5):
        run.tick()
        time.sleep(0.05)
    saved = set(bpy.context.scene.animate_anything.keys())
    assert not saved & {"job_running", "job_progress", "job_stage", "last_job_dir", "last_message"}
    bpy.ops.wm.open_mainfile(filepath=str(path))
    assert run.state == "cancelled" and not gen().is_running()
    assert gen().run_for(bpy.context.scene) is None and not status(bpy.context.scene).job_running


def test_a_scene_deleted_during_the_run_is_reported_not_crashed(world, bpy_module, tmp_path):
    bpy = bpy_module
    other = bpy.data.scenes.new("Other")
    run = gen().run_job(bpy.context, make_job(tmp_path / "shot"))
    bpy.context.window.scene = other
    bpy.data.scenes.remove(world)
    tick_to_end(run)
    assert run.state == "failed" and "scene was removed" in run.message
    assert other.sequence_editor is None and not gen().is_running()


def test_the_bundled_wheels_travel_only_with_blenders_own_python(world, monkeypatch, tmp_path):
    import sys

    site = str(tmp_path / "extensions" / ".local" / "lib" / "python3.11" / "site-packages")
    monkeypatch.setattr(sys, "path", [*sys.path, site])
    assert gen().generator_paths(sys.executable)[-1] == site
    assert gen().generator_paths(str(tmp_path / "other" / "python")) == []  # maybe another Python version
    assert gen().generator_python() == sys.executable  # empty preference = Blender's own Python


INSTALLED_GENERATE = """
import json, os, sys
import bpy, addon_utils
zip_path, out_dir = sys.argv[1], sys.argv[2]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
pkg = "bl_ext.user_default.animate_anything"
gen = sys.modules[pkg + ".operators.adapter.runs"]
bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
scene = bpy.context.scene
cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
scene.collection.objects.link(cam)
scene.camera = cam
cam.location, cam.rotation_euler = (0.0, -6.0, 0.0), (1.5708, 0.0, 0.0)
bpy.ops.mesh.primitive_cube_add()
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_x, scene.render.resolution_y = 64, 48
scene.frame_start, scene.frame_end = 1, 9
s = scene.animate_anything
s.width, s.height, s.num_frames, s.drag_source, s.output_dir = 64, 48, 9, "NONE", out_dir
result = bpy.ops.animate_anything.generate()
run = gen.active_run()
out = {
    "result": sorted(result),
    "message": run.full_message(),
    "job": str(run.job_dir),
    "root": str(run.process.extension_root),
    "paths": run.process.extra_paths,
    "strips": [st.name for st in scene.sequence_editor.strips],
}
addon_utils.disable(pkg, default_set=True)
print("RESULT " + json.dumps(out))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
def test_generate_from_the_installed_zip(bpy_module, tmp_path):
    """The extension as a user has it (built zip installed into a fresh HOME): Generate runs the
    generator from the installed folder, with the extracted Pillow wheel on its path."""
    zip_path = build_extension_zip(tmp_path)
    out, home = run_installed(INSTALLED_GENERATE, str(zip_path), str(tmp_path / "jobs"), tmp_path=tmp_path)
    assert out["result"] == ["FINISHED"], out["message"]
    assert out["message"].startswith("Imported 9 frames") and len(out["strips"]) == 1
    assert out["root"].startswith(str(home)) and out["root"].endswith("animate_anything")
    assert any(p.startswith(str(home)) and p.endswith("site-packages") for p in out["paths"]), out["paths"]
    assert (Path(out["job"]) / "out" / "result.json").is_file()


def test_the_second_generate_starts_on_the_standby_the_first_left(world, bpy_module, tmp_path):
    """Keep Generator Ready (on by default): a finished run leaves a standby generator, the next
    Generate in this Blender starts on it and imports as a cold one does; switching the
    preference off ends the standby, and the next run starts cold and leaves none."""
    bpy = bpy_module
    standby = submodule("blender_animate.addon.standby")
    prefs = submodule("operators.adapter.preferences").get_preferences(bpy.context)
    assert prefs.keep_generator_ready
    standby.stop()
    first = gen().run_job(bpy.context, make_job(tmp_path / "one"))
    tick_to_end(first)
    assert first.state == "done" and not first.process.warm
    waiting = standby.current()
    assert waiting is not None
    second = gen().run_job(bpy.context, make_job(tmp_path / "two"))
    assert second.process.warm and second.process.proc is waiting
    tick_to_end(second)
    assert second.state == "done", second.full_message()
    assert world.sequence_editor.strips["AA two"].frame_final_duration == 9
    try:
        prefs.keep_generator_ready = False
        assert standby.current() is None
        third = gen().run_job(bpy.context, make_job(tmp_path / "three"))
        assert not third.process.warm
        tick_to_end(third)
        assert third.state == "done" and standby.current() is None
    finally:
        prefs.keep_generator_ready = True
