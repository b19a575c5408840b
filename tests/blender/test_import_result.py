"""animate_anything.import_result on outputs made by the real generator process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.blender.conftest import submodule
from tests.blender.snapshot import assert_unchanged, data_snapshot
from tests.jobfiles import generate_job, hide_pyav

pytestmark = pytest.mark.blender
ROOT = Path(__file__).resolve().parents[2]
NUM_FRAMES, WIDTH, HEIGHT = 9, 64, 48


def python_with_pyav() -> str | None:
    """An interpreter that can write video.mp4: this one, or the project's main environment
    (the 4.5 test environment has no PyAV, like a user's Blender)."""
    for python in (sys.executable, str(ROOT / ".venv" / "bin" / "python")):
        if not Path(python).exists():
            continue
        if subprocess.run([python, "-c", "import av"], capture_output=True).returncode == 0:
            return python
    return None


def generate(folder: Path, python: str, extra_paths=()) -> Path:
    return generate_job(
        folder, python=python, extra_paths=extra_paths, width=WIDTH, height=HEIGHT, num_frames=NUM_FRAMES
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Real generator outputs: "movie" (video.mp4) and "frames" (PNG only, PyAV hidden)."""
    base = tmp_path_factory.mktemp("generated")
    jobs = {}
    python = python_with_pyav()
    if python is not None:
        jobs["movie"] = generate(base / "movie", python)
        assert (jobs["movie"] / "out" / "video.mp4").is_file()
    jobs["frames"] = generate(base / "frames", sys.executable, extra_paths=[hide_pyav(base / "hide_av")])
    assert not (jobs["frames"] / "out" / "video.mp4").exists()
    return jobs


@pytest.fixture
def job_copy(generated, tmp_path):
    def copy(kind: str, name: str = "shot") -> Path:
        if kind not in generated:
            pytest.skip("no Python with PyAV to make an mp4 with")
        return Path(shutil.copytree(generated[kind], tmp_path / name))

    return copy


def add_camera(bpy, scene):
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, -8.0, 1.0)
    cam.rotation_euler = (1.5, 0.0, 0.0)
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    return cam


def importer():
    return submodule("operators.adapter.result_import")


def test_mp4_becomes_strip_movie_image_and_camera_background(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    scene.frame_start, scene.frame_end = 5, 40
    cam = add_camera(bpy, scene)
    job = job_copy("movie")
    summary = importer().import_result(bpy.context, job)
    assert summary["kind"] == "movie" and summary["num_frames"] == NUM_FRAMES
    image = bpy.data.images[summary["image"]]
    assert image.source == "MOVIE" and image.frame_duration == NUM_FRAMES
    assert Path(bpy.path.abspath(image.filepath)) == job / "out" / "video.mp4"
    strip = scene.sequence_editor.strips[summary["strip"]]
    assert strip.type == "MOVIE"
    assert (strip.channel, strip.frame_final_start, strip.frame_final_duration) == (1, 5, NUM_FRAMES)
    assert cam.data.show_background_images
    (bg,) = cam.data.background_images
    assert bg.source == "IMAGE" and bg.image == image
    assert (bg.image_user.frame_duration, bg.image_user.frame_start) == (NUM_FRAMES, 5)
    scene.frame_set(7)
    assert bg.image_user.frame_current == 3  # movies count from frame 1


def test_png_frames_become_an_image_sequence(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    cam = add_camera(bpy, scene)
    summary = importer().import_result(bpy.context, job_copy("frames"))
    assert summary["kind"] == "sequence"
    image = bpy.data.images[summary["image"]]
    assert image.source == "SEQUENCE"
    strip = scene.sequence_editor.strips[summary["strip"]]
    assert strip.type == "IMAGE" and strip.frame_final_duration == NUM_FRAMES
    assert [e.filename for e in strip.elements] == [f"{i:04d}.png" for i in range(NUM_FRAMES)]
    bg = cam.data.background_images[0]
    assert bg.image_user.frame_duration == NUM_FRAMES
    scene.frame_set(scene.frame_start)
    assert bg.image_user.frame_current == 0  # file 0000.png on the first frame
    scene.frame_set(scene.frame_start + NUM_FRAMES - 1)
    assert bg.image_user.frame_current == NUM_FRAMES - 1


def test_importing_twice_updates_instead_of_duplicating(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    cam = add_camera(bpy, scene)
    job = job_copy("frames")
    first = importer().import_result(bpy.context, job, plane=True)
    before = data_snapshot()
    second = importer().import_result(bpy.context, job, plane=True)
    assert_unchanged(before, data_snapshot())
    assert {k: v for k, v in second.items()} == first
    assert len(cam.data.background_images) == 1
    assert len(scene.sequence_editor.strips) == 1


def test_a_second_job_goes_to_the_next_free_channel(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    a = importer().import_result(bpy.context, job_copy("frames", "shot_a"))
    b = importer().import_result(bpy.context, job_copy("frames", "shot_b"))
    assert (a["channel"], b["channel"]) == (1, 2)
    assert a["image"] != b["image"] and len(scene.sequence_editor.strips) == 2


def color_strip(se, name, channel, start, length):
    try:  # 5.0
        return se.strips.new_effect(name, "COLOR", channel, frame_start=start, length=length)
    except TypeError:  # 4.5
        return se.strips.new_effect(name, "COLOR", channel, frame_start=start, frame_end=start + length)


def test_a_channel_is_free_when_its_strips_are_elsewhere_in_time(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    se = scene.sequence_editor_create()
    color_strip(se, "late", 1, 200, 10)
    color_strip(se, "overlap", 2, scene.frame_start + 3, 10)
    summary = importer().import_result(bpy.context, job_copy("frames"))
    assert summary["channel"] == 1
    color_strip(se, "early", 3, scene.frame_start, 2)
    summary = importer().import_result(bpy.context, job_copy("frames", "other"))
    assert summary["channel"] == 4


def test_the_camera_plane_fills_the_view_and_shows_the_video(ext, job_copy, bpy_module):
    bpy = bpy_module
    from bpy_extras.object_utils import world_to_camera_view

    _, scene = ext
    cam = add_camera(bpy, scene)
    summary = importer().import_result(bpy.context, job_copy("frames"), plane=True, plane_distance=6.0)
    plane = bpy.data.objects[summary["plane"]]
    assert plane.parent == cam
    bpy.context.view_layer.update()
    corners = sorted(
        (round(v.x, 4), round(v.y, 4), round(v.z, 4))
        for v in (world_to_camera_view(scene, cam, plane.matrix_world @ p.co) for p in plane.data.vertices)
    )
    assert corners == [(0, 0, 6), (0, 1, 6), (1, 0, 6), (1, 1, 6)]
    tex = next(n for n in plane.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    assert tex.image.name == summary["image"] and tex.image_user.frame_duration == NUM_FRAMES
    uv = plane.data.uv_layers.active.data
    for loop in plane.data.loops:  # the corner at the image's top-left has UV (0, 1)
        co = plane.matrix_world @ plane.data.vertices[loop.vertex_index].co
        x, y, _ = world_to_camera_view(scene, cam, co)
        assert tuple(uv[loop.index].uv) == pytest.approx((x, y), abs=1e-4)


def test_without_a_camera_the_strip_is_added_with_a_warning(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    summary = importer().import_result(bpy.context, job_copy("frames"), plane=True)
    assert summary["strip"] and not summary["background"] and summary["plane"] is None
    assert any("no active camera" in w for w in summary["warnings"])


# ----------------------------------------------------------------------------- broken outputs
def _no_out(job):
    shutil.rmtree(job / "out")


def _partial(job):
    os.replace(job / "out", job / ".out-partial-12345")


def _no_result(job):
    (job / "out" / "result.json").unlink()


def _bad_result(job):
    (job / "out" / "result.json").write_text("{ not json")


def _missing_frame(job):
    (job / "out" / "frames" / "0004.png").unlink()


def _truncated_frame(job):
    path = job / "out" / "frames" / "0006.png"
    path.write_bytes(path.read_bytes()[:200])


def _wrong_size_frame(job):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(job / "out" / "frames" / "0002.png")


def _truncated_video(job):
    path = job / "out" / "video.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _missing_video(job):
    (job / "out" / "video.mp4").unlink()


def _escaping_path(job):
    path = job / "out" / "result.json"
    data = json.loads(path.read_text())
    data["outputs"]["frames"] = "../../elsewhere"
    path.write_text(json.dumps(data))


BROKEN = [
    ("frames", _no_out, "has no out/ folder"),
    ("frames", _partial, "still writing it or was stopped"),
    ("frames", _no_result, "result.json is missing"),
    ("frames", _bad_result, "not readable JSON"),
    ("frames", _missing_frame, "lacks 1 of its 9 frames"),
    ("frames", _truncated_frame, "not a complete PNG"),
    ("frames", _wrong_size_frame, "is 32x32, expected 64x48"),
    ("frames", _escaping_path, "outside the job folder"),
    ("movie", _truncated_video, "incomplete or not an MP4"),
    ("movie", _missing_video, "is missing"),
]


@pytest.mark.parametrize(("kind", "damage", "message"), BROKEN, ids=[b[1].__name__[1:] for b in BROKEN])
def test_a_broken_output_is_refused_and_changes_nothing(ext, job_copy, bpy_module, kind, damage, message):
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    good = importer().import_result(bpy.context, job_copy("frames", "earlier"))  # something to keep
    job = job_copy(kind)
    damage(job)
    before = data_snapshot()
    with pytest.raises(importer().ResultError, match=message.replace("(", r"\(")) as info:
        importer().import_result(bpy.context, job, plane=True)
    assert "Generate" in str(info.value) or "outside" in str(info.value)
    assert_unchanged(before, data_snapshot())
    # The operator reports the same error and still changes nothing.
    with pytest.raises(RuntimeError, match="Error"):
        bpy.ops.animate_anything.import_result(directory=str(job))
    assert_unchanged(before, data_snapshot())
    assert bpy.data.images.get(good["image"]) is not None


def test_a_broken_reimport_keeps_the_earlier_import(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    cam = add_camera(bpy, scene)
    job = job_copy("frames")
    first = importer().import_result(bpy.context, job, plane=True)
    before = data_snapshot()
    _missing_frame(job)
    with pytest.raises(importer().ResultError, match="lacks 1 of its 9 frames"):
        importer().import_result(bpy.context, job, plane=True)
    assert_unchanged(before, data_snapshot())
    (bg,) = cam.data.background_images
    assert bg.image.name == first["image"] and bg.image_user.frame_duration == NUM_FRAMES
    assert scene.sequence_editor.strips[first["strip"]].frame_final_duration == NUM_FRAMES
    assert bpy.data.objects[first["plane"]].parent == cam


def test_the_operator_uses_the_scene_import_settings(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    cam = add_camera(bpy, scene)
    settings = scene.animate_anything
    settings.import_plane, settings.import_strip = True, False
    assert bpy.ops.animate_anything.import_result(directory=str(job_copy("frames"))) == {"FINISHED"}
    assert scene.sequence_editor is None or len(scene.sequence_editor.strips) == 0
    assert any(o.parent == cam for o in bpy.data.objects)


def test_long_job_names_stay_distinct(ext, job_copy, bpy_module):
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    stem = "A very long scene name that fills nearly all of Blender's ID name-"
    job_a = job_copy("frames", stem + "20261124-101010")
    a = importer().import_result(bpy.context, job_a, plane=True)
    b = importer().import_result(bpy.context, job_copy("frames", stem + "20261124-101011"), plane=True)
    assert a["image"] != b["image"] and a["strip"] != b["strip"] and a["plane"] != b["plane"]
    assert all(len(n.encode()) <= 63 for n in (a["image"], b["image"], a["plane"], b["plane"]))
    assert len(scene.sequence_editor.strips) == 2
    again = importer().import_result(bpy.context, job_a, plane=True)
    assert again["image"] == a["image"] and len(scene.sequence_editor.strips) == 2


def test_paths_are_relative_to_a_saved_blend(ext, job_copy, bpy_module, tmp_path):
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "project.blend"))
    scene = bpy.context.scene
    movie = importer().import_result(bpy.context, job_copy("movie", "shot_movie"))
    frames = importer().import_result(bpy.context, job_copy("frames", "shot_frames"))
    image = bpy.data.images[movie["image"]]
    assert image.filepath == "//shot_movie/out/video.mp4" and image.frame_duration == NUM_FRAMES
    strips = scene.sequence_editor.strips
    assert strips[movie["strip"]].filepath == "//shot_movie/out/video.mp4"
    assert strips[frames["strip"]].directory.rstrip("/\\") == "//shot_frames/out/frames"
    assert bpy.data.images[frames["image"]].filepath == "//shot_frames/out/frames/0000.png"
    assert strips[frames["strip"]].frame_final_duration == NUM_FRAMES


def test_the_result_is_in_time_with_the_scene(ext, bpy_module, tmp_path):
    """A job whose info says it sampled the scene range 1-97 every second frame (t_i = 1 + 2 i, as
    job_export writes for 97 frames into 49), run by Generate's own code and imported."""
    from blender_animate import job as jobfile
    from tests.jobfiles import make_job

    bpy = bpy_module
    _, scene = ext
    importer = submodule("operators.adapter.result_import")
    compat = submodule("operators.adapter.compat")
    runs = submodule("operators.adapter.runs")
    job = make_job(tmp_path / "long", width=WIDTH, height=HEIGHT, num_frames=49)
    spec = jobfile.read_spec(job)
    spec.info = {**(spec.info or {}), "frame_start": 1, "frame_end": 97}
    spec.info["sample_frames"] = [1.0 + 2.0 * i for i in range(49)]
    jobfile.write_spec(job, spec)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 1, 97
    scene.animate_anything.import_plane = True
    run = runs.run_job(bpy.context, job, python=python_with_pyav() or sys.executable)
    run.wait()
    assert run.state == "done", run.full_message()
    summary = run.summary
    # Generate asked for PNG frames beside the video: the strip is made of them.
    assert len(list((job / "out" / "frames").glob("*.png"))) == 49
    assert not summary["warnings"], summary["warnings"]
    strip = scene.sequence_editor.strips[summary["strip"]]
    assert compat.strip_span(strip) == (1, 98), "the strip spans the job's frame range 1-97"
    bg = cam.data.background_images[0]
    tex = bpy.data.materials[summary["plane"]].node_tree.nodes["Animate Anything video"]
    movie = summary["kind"] == "movie"

    def shown(iu, frame):
        """The video frame (0-based) an ImageUser shows at `frame`, by Blender's rule: file number
        frame - frame_start + 1 + frame_offset; movies count from 1, our PNG files from 0000."""
        return frame - iu.frame_start + 1 + iu.frame_offset - (1 if movie else 0)

    for frame, video_frame in ((1, 0), (2, 0), (3, 1), (49, 24), (50, 24), (97, 48)):
        scene.frame_set(frame)
        assert strip.strip_elem_from_frame(frame).filename == f"{video_frame:04d}.png", frame
        # What the viewport and the renderer draw: the evaluated (driven) ImageUsers.
        depsgraph = bpy.context.evaluated_depsgraph_get()
        cam_eval = cam.data.evaluated_get(depsgraph)
        assert shown(cam_eval.background_images[0].image_user, frame) == video_frame, frame
        assert shown(tex.image_user, frame) == video_frame, frame
        # Blender's own frame number of the background (bpy 5.3 may compute it before the driver
        # runs on the first change to a frame, so it is read once the frame is evaluated).
        scene.frame_set(frame)
        assert bg.image_user.frame_current - (1 if movie else 0) == video_frame, frame
    # Re-importing replaces the strip and keeps one background, still in time.
    again = importer.import_result(bpy.context, job, strip=True, background=True, plane=True)
    assert again["strip"] == summary["strip"] and len(scene.sequence_editor.strips) == 1
    assert len(cam.data.background_images) == 1
    scene.frame_set(49)
    cam_eval = cam.data.evaluated_get(bpy.context.evaluated_depsgraph_get())
    assert shown(cam_eval.background_images[0].image_user, 49) == 24


def test_files_vanishing_after_the_checks_give_a_readable_error(ext, job_copy, bpy_module, monkeypatch):
    """The checks passed, then the frames were deleted before Blender loaded them: Blender's load
    error becomes the same kind of message as the other import failures, and nothing changes."""
    bpy = bpy_module
    _, scene = ext
    add_camera(bpy, scene)
    job = job_copy("frames")
    checked = importer().find_result(job)
    shutil.rmtree(job / "out" / "frames")
    monkeypatch.setattr(importer(), "find_result", lambda _job: checked)
    before = data_snapshot()
    with pytest.raises(importer().ResultError, match="Blender could not load the result") as info:
        importer().import_result(bpy.context, job)
    assert "Import it again" in str(info.value) and "Traceback" not in str(info.value)
    assert_unchanged(before, data_snapshot())
