"""Export the job folder (DESIGN.md "The job directory") for the scene's current settings.

`export_job(context, directory)` creates a new job folder inside `directory` (named
`<scene>-<YYYYmmdd-HHMMSS>`, with `-2`, `-3`... when taken) holding job.json, reference.png,
depth.npy (rendered references only), conditions.npz and the reference video when one is set. It
runs nothing: it is what Generate hands to the generator and what a render farm runs with
`python -m backend run JOB`. Everything is written into a hidden temporary folder next to it and
renamed into place at the end, so a job folder either is complete or does not exist.

Settings are checked first (`settings_problems`, then JobSpec.validate) and refused with a message
that says what to change; nothing in the .blend changes (the frame and render settings touched to
read the camera or render the reference are restored).

Sizes: the camera's K is computed at the render size and brought to the job size by the centre-crop
rule; the reference image goes through the same crop (operators/reference.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty

from ..blender_animate import job as jobfile
from ..panels.preferences import get_preferences as preferences  # the add-on preferences, or None
from . import reference, scene_camera, scene_strokes


class ExportError(ValueError):
    """The job cannot be exported; the message says what to change."""


# ----------------------------------------------------------------------------------------------
# Settings


def frame_range(scene, settings) -> tuple[int, int]:
    """(frame_start, frame_end) scene frames of the camera move."""
    if settings.use_scene_range:
        return scene.frame_start, scene.frame_end
    return settings.frame_start, settings.frame_end


def video_fps(scene, settings) -> float:
    """The job's fps: the setting, or (0) the rate at which num_frames last as long as the range plays."""
    if settings.fps > 0:
        return float(settings.fps)
    start, end = frame_range(scene, settings)
    scene_fps = scene.render.fps / scene.render.fps_base
    fps = (settings.num_frames - 1) * scene_fps / max(end - start, 1)
    return float(min(max(fps, 0.01), 240.0))


def output_folder(scene) -> Path:
    """The folder that receives job folders: settings.output_dir (// = next to the .blend; the
    temporary folder while the file is unsaved)."""
    folder = scene.animate_anything.output_dir or "//animate_anything/"
    if folder.startswith("//") and not bpy.data.filepath:
        return Path(bpy.app.tempdir or tempfile.gettempdir()) / "animate_anything"
    return Path(bpy.path.abspath(folder))


def settings_problems(context) -> list[str]:
    """Why the current settings cannot be exported, cheapest checks only (used by poll functions and
    drawn by the panel). [] when export can be tried; the export itself checks the rest."""
    scene = context.scene
    settings = getattr(scene, "animate_anything", None)
    if settings is None:
        return ["the add-on's scene settings are missing: re-enable Animate Anything"]
    problems = []
    cam = scene.camera
    if cam is None:
        problems.append("No scene camera: add a camera and set it as the scene camera")
    elif cam.type != "CAMERA":
        problems.append(f"The scene camera '{cam.name}' is not a camera object")
    elif cam.data.type != "PERSP":
        kind = scene_camera.LENS_TYPES.get(cam.data.type, cam.data.type.lower())
        problems.append(f"Camera '{cam.name}' is {kind}: set its lens type to Perspective")
    start, end = frame_range(scene, settings)
    if end <= start:
        problems.append(f"The frame range {start}-{end} is empty: set End after Start")
    for name in ("width", "height"):
        value = getattr(settings, name)
        if value % 8:
            problems.append(
                f"{name.capitalize()} {value} is not a multiple of 8: use {max(16, value // 8 * 8)}"
            )
    if settings.mode in ("guided", "animateanything") and settings.num_frames % 4 != 1:
        problems.append(f"{settings.mode} mode needs 4k+1 frames (49 or 81), not {settings.num_frames}")
    if settings.reference_source == "FILE" and settings.reference_image is None:
        problems.append("No reference image: pick one, or set Reference to Render")
    if settings.drag_source == "GREASE_PENCIL" and settings.drag_object is not None and settings.drag_layer:
        if settings.drag_layer not in {layer.name for layer in settings.drag_object.data.layers}:
            problems.append(f"'{settings.drag_object.name}' has no layer '{settings.drag_layer}'")
    if settings.reference_video and not Path(bpy.path.abspath(settings.reference_video)).is_file():
        problems.append("The motion video does not exist: pick another file or clear it")
    return problems


def make_spec(context, settings, *, reference_source: str, reference_path: str = "") -> jobfile.JobSpec:
    """The JobSpec for the settings and the add-on preferences, validated (raises ExportError)."""
    scene = context.scene
    prefs = preferences(context)
    video = ""
    if settings.reference_video:
        video = "reference_video" + Path(bpy.path.abspath(settings.reference_video)).suffix.lower()
    spec = jobfile.JobSpec(
        mode=settings.mode,
        width=settings.width,
        height=settings.height,
        num_frames=settings.num_frames,
        fps=video_fps(scene, settings),
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        seed=settings.seed,
        steps=settings.steps,
        guidance_scale=float(settings.guidance_scale),
        strength=float(settings.strength),
        noise_warp=bool(settings.noise_warp),
        # getattr's default also stands in when the preferences are missing (prefs is None).
        model=getattr(prefs, "cogvideox_model", ""),
        animateanything_model=getattr(prefs, "animateanything_model", ""),
        # Downloads need both the user's yes and Blender's "Allow Online Access".
        allow_download=bool(getattr(prefs, "allow_download", False)) and bool(bpy.app.online_access),
        device=getattr(prefs, "device", "auto"),
        dtype=getattr(prefs, "dtype", "auto"),
        offload=getattr(prefs, "offload", "auto"),
        reference_source=reference_source,
        reference_path=reference_path,
        reference_video=video,
    )
    try:
        return spec.validate()
    except jobfile.JobError as exc:
        raise ExportError(str(exc)) from exc


# ----------------------------------------------------------------------------------------------
# Export


def _job_name(scene) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", scene.name).strip("._") or "job"
    return f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"


def _unique(directory: Path, name: str) -> Path:
    path, n = directory / name, 2
    while path.exists():
        path, n = directory / f"{name}-{n}", n + 1
    return path


def _focus_depth(scene, c2w0: np.ndarray) -> float:
    """Planar depth of the camera's focus object at the first frame, 0.0 when it has none."""
    cam = scene.camera
    target = cam.data.dof.focus_object if cam is not None else None
    if target is None:
        return 0.0
    p = np.array(target.matrix_world.translation, dtype=np.float64)
    z = float((p - c2w0[:3, 3]) @ c2w0[:3, 2])
    return z if z > 0 else 0.0


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    jobfile.atomic_write(
        path, lambda fh: Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(fh, format="PNG")
    )


def export_job(context, directory) -> tuple[Path, list[str]]:
    """Write a new job folder inside `directory` for the scene's settings; return (job_dir, warnings).

    Raises ExportError (or the readers' own ValueError subclasses: SceneCameraError,
    DragSourceError, ReferenceImageError, JobError) with a message that says what to change, and
    OSError when the folder cannot be written. Nothing is left behind on failure."""
    scene = context.scene
    settings = scene.animate_anything
    problems = settings_problems(context)
    if problems:
        raise ExportError("; ".join(problems))
    start, end = frame_range(scene, settings)
    W, H, F = settings.width, settings.height, settings.num_frames
    source = "render" if settings.reference_source == "RENDER" else "file"
    image = settings.reference_image
    ref_path = bpy.path.abspath(image.filepath) if source == "file" and image.filepath else ""
    spec = make_spec(context, settings, reference_source=source, reference_path=ref_path)
    video_src = Path(bpy.path.abspath(settings.reference_video)) if settings.reference_video else None
    directory = Path(directory)
    try:  # first, so that a bad folder is refused before any rendering
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"cannot create the output folder {directory} ({exc}): pick another Output folder"
        ) from exc

    # 1. The camera (K at the render size, then at the job size).
    cam = scene_camera.read_camera(context, start, end, F)
    K = scene_camera.job_intrinsics(cam, W, H)
    warnings = list(cam.warnings)
    # 2. The drags, projected through the first frame's camera at the job size.
    drags = scene_strokes.read_drags(context, settings, cam.c2w[0], K[0], W, H, cam.times, start, end)
    warnings += drags.warnings
    # 3. The reference image (and depth when rendered).
    depth = None
    if source == "render":
        rgb, depth, render_wh, ref_warnings = reference.render_reference(context, start, W, H)
    else:
        render_wh = (cam.width, cam.height)
        rgb, ref_warnings = reference.reference_from_image(image, W, H, render_wh)
        spec.fallback_depth = drags.start_depth or _focus_depth(scene, cam.c2w[0])
    warnings += ref_warnings
    if drags.num_strokes and drags.tracks.shape[0] == 0 and not drags.region_masks.shape[0]:
        warnings.append("none of the strokes could be used as a drag (see the warnings above)")

    conditions = jobfile.Conditions.create(
        cam.c2w,
        K,
        drags.tracks,
        drags.track_visible,
        drags.track_radius,
        drags.region_masks,
        height=H,
        width=W,
    )
    try:
        conditions.validate(F, H, W)
    except jobfile.JobError as exc:
        raise ExportError(f"the scene gave invalid conditions ({exc}): check the camera and strokes") from exc
    spec.info = {
        "blender": bpy.app.version_string,
        "scene": scene.name,
        "blend_file": bpy.data.filepath,
        "frame_start": start,
        "frame_end": end,
        "sample_frames": [round(float(t), 6) for t in cam.times],
        "cameras": sorted(set(cam.camera_names)),
        "render_size": [cam.width, cam.height],
        "reference_render_size": list(render_wh),
        "drag_source": settings.drag_source,
        "drag_timing": settings.drag_timing,
        "strokes_read": drags.num_strokes,
        "tracks": int(drags.tracks.shape[0]),
        "regions": int(drags.region_masks.shape[0]),
        "warnings": warnings,
    }
    spec.validate()

    # 4. Write everything into a temporary folder, then rename it into place.
    job_dir = _unique(directory, _job_name(scene))
    tmp = Path(tempfile.mkdtemp(prefix=f".{job_dir.name}.partial-", dir=directory))
    try:
        _write_png(tmp / jobfile.REFERENCE_PNG, rgb)
        if depth is not None:
            jobfile.save_depth(tmp, depth)
        conditions.save(tmp / jobfile.CONDITIONS_NPZ)
        if video_src is not None:
            shutil.copyfile(video_src, tmp / spec.reference_video)
        jobfile.write_spec(tmp, spec)  # last: a job.json means the rest is there
        jobfile.load_job(tmp)  # the generator's own validator accepts it
        os.rename(tmp, job_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return job_dir, warnings


# ----------------------------------------------------------------------------------------------
# Operator


class ANIMATE_ANYTHING_OT_export_job(bpy.types.Operator):
    """Write the job folder (camera, drags, reference image) without running anything"""

    bl_idname = "animate_anything.export_job"
    bl_label = "Export Job"
    bl_options = {"REGISTER"}

    directory: StringProperty(
        name="Folder",
        subtype="DIR_PATH",
        default="",
        description="Folder that receives the new job folder (empty = the Output folder of the settings)",
    )

    @classmethod
    def poll(cls, context):
        problems = settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.directory)) if self.directory else output_folder(context.scene)
        try:
            job_dir, warnings = export_job(context, folder)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        for warning in warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Exported the job to {job_dir}")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_export_job,)
