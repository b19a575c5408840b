"""animate_anything.encode_video: PNG frames from the numpy-and-Pillow generator -> MP4 with
Blender's own FFmpeg."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from tests.blender.conftest import submodule
from tests.blender.snapshot import assert_unchanged, data_snapshot
from tests.jobfiles import generate_job, hide_pyav

pytestmark = pytest.mark.blender
NUM_FRAMES = 9


@pytest.fixture(scope="module")
def frames_job(tmp_path_factory):
    base = tmp_path_factory.mktemp("encode")
    job = generate_job(
        base / "shot", python=sys.executable, extra_paths=[hide_pyav(base / "hide")], num_frames=NUM_FRAMES
    )
    assert not (job / "out" / "video.mp4").exists() and (job / "out" / "flow_frames").is_dir()
    return job


@pytest.fixture
def job(frames_job, tmp_path):
    return shutil.copytree(frames_job, tmp_path / "shot")


def encoder():
    return submodule("operators.adapter.encoding")


def first_frame_of(bpy, mp4):
    """Frame 1 of an mp4 decoded by Blender's FFmpeg, (H, W, 3) uint8 top row first."""
    image = bpy.data.images.load(str(mp4), check_existing=False)
    try:
        assert image.source == "MOVIE"
        w, h = image.size
        px = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(px)
        frames = image.frame_duration
    finally:
        bpy.data.images.remove(image)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]
    return frames, np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_frames_become_mp4s_recorded_in_result_json(ext, job, bpy_module):
    bpy = bpy_module
    from PIL import Image

    before = data_snapshot()
    added = encoder().encode_job(job)
    assert added == {"video": "out/video.mp4", "flow_video": "out/flow.mp4"}
    assert_unchanged(before, data_snapshot())  # the temporary scene and render slots are gone
    result = json.loads((job / "out" / "result.json").read_text())
    assert result["outputs"]["video"] == "out/video.mp4" and "Blender" in result["encoded_by"]
    assert not [p.name for p in (job / "out").iterdir() if p.name.startswith(".")], "no temporary files left"
    frames, first = first_frame_of(bpy, job / "out" / "video.mp4")
    assert frames == NUM_FRAMES
    png = np.asarray(Image.open(job / "out" / "frames" / "0000.png").convert("RGB"))
    assert first.shape == png.shape
    assert np.abs(first.astype(int) - png).mean() < 6, "colours pass through (view transform Standard)"
    assert encoder().encode_job(job) == {}, "a second call has nothing to do"


def test_the_operator_encodes_and_reimports_as_a_movie(ext, job, bpy_module):
    bpy = bpy_module
    _, scene = ext
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    importer = submodule("operators.adapter.result_import")
    first = importer.import_result(bpy.context, job)
    assert first["kind"] == "sequence"
    assert bpy.ops.animate_anything.encode_video(directory=str(job)) == {"FINISHED"}
    image = bpy.data.images[first["image"]]
    assert image.source == "MOVIE" and image.frame_duration == NUM_FRAMES
    (strip,) = scene.sequence_editor.strips
    assert strip.type == "MOVIE" and strip.name == first["strip"] and strip.frame_final_duration == NUM_FRAMES
    (bg,) = cam.data.background_images
    assert bg.image == image and bg.image_user.frame_offset == 0


def test_an_incomplete_job_is_not_encoded(ext, job, bpy_module):
    bpy = bpy_module
    (job / "out" / "frames" / "0003.png").unlink()
    before = data_snapshot()
    with pytest.raises(RuntimeError, match="lacks 1 of its 9 frames"):
        bpy.ops.animate_anything.encode_video(directory=str(job))
    assert_unchanged(before, data_snapshot())
    assert not (job / "out" / "video.mp4").exists()
