"""Encode a job's PNG frames to H.264 MP4 with Blender's own FFmpeg (behind `animate_anything.encode_video`).

The preview generator writes ``out/video.mp4`` only where PyAV is installed; in Blender's bundled
Python (nothing installed) it writes ``out/frames/NNNN.png`` (and ``out/flow_frames/``). This
operator turns those into ``out/video.mp4`` and ``out/flow.mp4`` at the job's fps and records them in
``out/result.json``, so that the next import uses the movie.

How: a temporary scene holds the frames as an image strip and renders the Sequencer to FFmpeg
(MPEG-4 container, H.264, view transform Standard so colours pass through unchanged). The scene is
removed afterwards and the .blend is left as it was. Each file is rendered under a temporary name
and renamed into place, so a failed encode never leaves a video that looks finished.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from ...blender_animate import result as contract
from . import compat
from .result_import import find_result


class EncodeError(Exception):
    """The frames cannot be encoded; the message says what to do."""


def encode_frames(frames: list[Path], mp4: Path, fps: float, width: int, height: int) -> Path:
    """Encode PNG files (in order, all width x height) to `mp4` (H.264) at `fps`. Returns mp4."""
    if not frames:
        raise EncodeError("no frames to encode")
    mp4 = Path(mp4)
    tmp = mp4.with_name(f".{mp4.stem}.encoding.mp4")  # Blender needs the .mp4 ending
    images_before = {image.name for image in bpy.data.images}
    scene = bpy.data.scenes.new("AA encode (temporary)")
    try:
        se = scene.sequence_editor_create()
        strip = se.strips.new_image("frames", str(frames[0]), 1, 1)
        for frame in frames[1:]:
            if frame.parent != frames[0].parent:
                raise EncodeError("all frames must be in one folder")
            strip.elements.append(frame.name)
        scene.frame_start, scene.frame_end = 1, len(frames)
        r = scene.render
        r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.fps = max(1, round(fps))
        r.fps_base = r.fps / fps
        r.use_sequencer, r.use_compositing = True, False
        scene.view_settings.view_transform = "Standard"
        scene.view_settings.look = "None"
        scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
        compat.set_video_format(r.image_settings)
        r.ffmpeg.format = "MPEG4"
        r.ffmpeg.codec = "H264"
        r.ffmpeg.constant_rate_factor = "HIGH"
        r.ffmpeg.audio_codec = "NONE"
        r.use_file_extension = True
        r.filepath = str(tmp)
        bpy.ops.render.render(animation=True, scene=scene.name)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise EncodeError(f"Blender's FFmpeg wrote no video to {tmp}")
        os.replace(tmp, mp4)
    finally:
        tmp.unlink(missing_ok=True)
        bpy.data.scenes.remove(scene)
        for image in [i for i in bpy.data.images if i.name not in images_before]:
            bpy.data.images.remove(image)  # the render slots the encode created
    return mp4


def needs_encoding(job_dir) -> bool:
    """Cheap test (a few file-system calls, no decoding) for the sidebar: the job finished with PNG
    frames (out/result.json and out/frames/*.png) but has no out/video.mp4."""
    if not job_dir:
        return False
    out = Path(bpy.path.abspath(str(job_dir))) / contract.OUT_DIR
    try:
        if not (out / contract.RESULT_JSON).is_file() or (out / contract.VIDEO).is_file():
            return False
        return next((out / contract.FRAMES_DIR).glob("*.png"), None) is not None
    except OSError:
        return False


def encode_job(job_dir) -> dict:
    """Encode a finished job's PNG frames (and flow frames) to MP4s in out/ and record them in
    out/result.json. Returns the outputs added, e.g. {"video": "out/video.mp4"}; {} when the job
    already has its videos. Raises ResultError for an incomplete job, EncodeError when
    Blender has no FFmpeg."""
    files = find_result(job_dir)
    out = files.job_dir / contract.OUT_DIR
    outputs = files.result.get("outputs") or {}
    if not getattr(bpy.app.ffmpeg, "supported", False):
        raise EncodeError("this Blender was built without FFmpeg: it cannot write MP4 files")
    added = {}
    if files.kind == "sequence":  # find_result checked the frames
        encode_frames(files.frames, out / contract.VIDEO, files.fps, files.width, files.height)
        added["video"] = contract.out_path(contract.VIDEO)
    flow_dir = out / contract.FLOW_FRAMES_DIR
    if not outputs.get("flow_video") and flow_dir.is_dir():
        flow_frames = sorted(flow_dir.glob("*.png"))
        if len(flow_frames) == files.num_frames:
            contract.check_frames(flow_frames, files.width, files.height)
            encode_frames(flow_frames, out / contract.FLOW_VIDEO, files.fps, files.width, files.height)
            added["flow_video"] = contract.out_path(contract.FLOW_VIDEO)
    if added:
        contract.record_outputs(files, added, encoded_by=f"Blender {bpy.app.version_string} FFmpeg")
    return added
