"""Write the job folder (DESIGN.md "The job directory") for the scene's current settings.

`export_job(context, directory)` creates a new job folder inside `directory` (named
`<scene>-<YYYYmmdd-HHMMSS>`, with `-2`, `-3`... when taken) holding job.json, reference.png,
depth.npy (rendered references only), conditions.npz and the reference video when one is set.
Rendered references also give conditions.npz `object_ids` with job.json `objects`, and, when a
drag starts on an object (drag_regions "auto"), clean_plate.png + clean_plate_depth.npy with
`clean_plate: true` (identity.py). It runs nothing: it is what Generate hands to the generator
and what a render farm runs with `python -m backend run JOB`. Everything is written into a hidden
temporary folder next to it and renamed into place at the end, so a job folder either is
complete or does not exist.

Settings are checked first (`settings.settings_problems`, then JobSpec.validate) and refused with a message
that says what to change; nothing in the .blend changes (the frame and render settings touched to
read the camera or render the reference are restored).

Sizes: the camera's K is computed at the render size and brought to the job size by the centre-crop
rule; the reference image goes through the same crop (reference.py).

A folder that cannot take the job (read-only, a full disk, no permission) is refused with
OutputFolderError, which names the folder and what to do; it is checked before any rendering.
The job folder and its files get the modes of ordinary files (the umask), so a render-farm worker
running as another user can read them.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from pathlib import Path

import bpy
import numpy as np

from ...blender_animate import job as jobfile
from . import identity, model_limits, reference, scene_camera, scene_strokes
from .preferences import get_preferences
from .settings import frame_range, settings_problems, video_fps


class ExportError(ValueError):
    """The job cannot be exported; the message says what to change."""


class OutputFolderError(ExportError, OSError):
    """The output folder cannot take the job (read-only, full, no permission): the message names
    the folder and what to do. Both an ExportError and an OSError."""


def folder_error(exc: OSError, directory) -> OutputFolderError:
    """The OSError of writing into `directory`, in words that name the folder and what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        text = f"the disk holding the output folder {directory} is full ({reason}): free some space there"
    elif exc.errno == errno.EROFS:
        text = f"the output folder {directory} is on a read-only disk ({reason})"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        text = f"the output folder {directory} cannot be written ({reason})"
    else:
        text = f"the job could not be written into the output folder {directory} ({reason})"
    return OutputFolderError(f"{text}, or pick another Output folder")


def _new_hidden_folder(directory: Path, name: str) -> Path:
    """A new empty folder `.<name>.partial-<random>` in `directory`, with the mode of any folder
    this process makes (0777 less the umask; tempfile.mkdtemp would make it 0700)."""
    while True:
        tmp = directory / f".{name}.partial-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def make_spec(context, settings, *, reference_source: str, reference_path: str = "") -> jobfile.JobSpec:
    """The JobSpec for the settings and the add-on preferences, validated (raises ExportError)."""
    scene = context.scene
    prefs = get_preferences(context)
    video = ""
    family = getattr(settings, "model_family", "cogvideox")
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
        model=getattr(prefs, "wan_model" if family == "wan" else "cogvideox_model", ""),
        model_family=family,
        guidance=getattr(settings, "guidance", "ttm"),
        lora=bpy.path.abspath(getattr(prefs, "lora", "")) if getattr(prefs, "lora", "") else "",
        lora_scale=float(getattr(settings, "lora_scale", 1.0)),
        tweak_index=int(getattr(settings, "tweak_index", -1)),
        tstrong_index=int(getattr(settings, "tstrong_index", -1)),
        noise_degradation=float(getattr(settings, "noise_degradation", 0.0)),
        # Wan only (an original-format transformer over the model folder's), as an absolute path.
        transformer_file=_transformer_file(settings) if family == "wan" else "",
        animateanything_model=getattr(prefs, "animateanything_model", ""),
        segment_model=getattr(prefs, "segment_model", "").strip(),
        depth_model=getattr(prefs, "depth_model", "").strip(),
        # Downloads need both the user's yes and Blender's "Allow Online Access".
        allow_download=bool(getattr(prefs, "allow_download", False)) and bool(bpy.app.online_access),
        device=getattr(prefs, "device", "auto"),
        dtype=getattr(prefs, "dtype", "auto"),
        offload=getattr(prefs, "offload", "auto"),
        reference_source=reference_source,
        reference_path=reference_path,
        reference_video=video,
        drag_regions=getattr(settings, "drag_regions", "AUTO").lower(),
        object_max_share=getattr(settings, "object_max_share", 35.0) / 100.0,
    )
    try:
        return spec.validate()
    except jobfile.JobError as exc:
        raise ExportError(str(exc)) from exc


def _transformer_file(settings) -> str:
    value = getattr(settings, "transformer_file", "")
    return str(Path(bpy.path.abspath(value)).expanduser()) if value else ""


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


def export_job(context, directory, *, rendered=None) -> tuple[Path, list[str]]:
    """Write a new job folder inside `directory` for the scene's settings; return (job_dir, warnings).
    `rendered`: a reference already rendered (reference_job.Rendered: Generate renders in a
    background Blender first); else a rendered reference is rendered here, in this process.

    Raises ExportError (or the readers' own ValueError subclasses: SceneCameraError,
    DragSourceError, ReferenceImageError, JobError) with a message that says what to change, and
    OutputFolderError (an ExportError and an OSError) naming the folder when it cannot be written.
    Nothing is left behind on failure."""
    scene = context.scene
    settings = scene.animate_anything
    problems = settings_problems(context, fresh=True)
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
        _new_hidden_folder(directory, "write-check").rmdir()
    except OSError as exc:
        raise folder_error(exc, directory) from exc

    # 1. The camera (K at the render size, then at the job size).
    cam = scene_camera.read_camera(context, start, end, F)
    K = scene_camera.job_intrinsics(cam, W, H)
    warnings = list(cam.warnings)
    # 2. The drags, projected through the first frame's camera at the job size.
    drags = scene_strokes.read_drags(context, settings, cam.c2w[0], K[0], W, H, cam.times, start, end)
    warnings += drags.warnings
    # 3. The reference image (and depth, object ids and a clean plate when rendered).
    depth = None
    if source == "render" and rendered is None:
        rendered = identity.render_job_reference(
            context,
            start,
            W,
            H,
            quality=getattr(settings, "render_quality", "FINAL"),
            hide=reference.drag_objects(context, settings),
            drag_starts=scene_strokes.drag_starts(drags) if spec.drag_regions == "auto" else None,
            object_max_share=spec.object_max_share,
        )
    if source == "render":
        rgb, depth, render_wh = rendered.rgb, rendered.depth, rendered.render_wh
        ref_warnings = list(rendered.warnings)
        spec.objects = dict(rendered.objects)
        spec.clean_plate = rendered.clean_plate_rgb is not None
    else:
        render_wh = (cam.width, cam.height)
        rgb, ref_warnings = reference.reference_from_image(image, W, H, render_wh)
        spec.fallback_depth = (
            getattr(settings, "fallback_depth", 0.0) or drags.start_depth or _focus_depth(scene, cam.c2w[0])
        )
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
        rendered.object_ids if source == "render" else None,
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
        # What the panel assumed (Size, Frames); the generator reads the checkpoint's own variant.
        "model_variant": model_limits.variant_of(settings).name if settings.mode == "guided" else "",
        "strokes_read": drags.num_strokes,
        "tracks": int(drags.tracks.shape[0]),
        "regions": int(drags.region_masks.shape[0]),
        "clean_plate_hides": [e["name"] for e in spec.objects.values() if not e["in_clean_plate"]],
        "warnings": warnings,
    }
    spec.validate()

    # 4. Write everything into a temporary folder, then rename it into place.
    job_dir = _unique(directory, _job_name(scene))
    tmp = None
    try:
        tmp = _new_hidden_folder(directory, job_dir.name)
        _write_png(tmp / jobfile.REFERENCE_PNG, rgb)
        if depth is not None:
            jobfile.save_depth(tmp, depth)
        if spec.clean_plate:
            _write_png(tmp / jobfile.CLEAN_PLATE_PNG, rendered.clean_plate_rgb)
            jobfile.save_depth(tmp, rendered.clean_plate_depth, name=jobfile.CLEAN_PLATE_DEPTH_NPY)
        conditions.save(tmp / jobfile.CONDITIONS_NPZ)
        if video_src is not None:
            try:
                shutil.copyfile(video_src, tmp / spec.reference_video)
            except OSError as exc:
                if exc.filename is not None and Path(exc.filename) == video_src:
                    reason = exc.strerror or exc
                    raise ExportError(f"the motion video {video_src} cannot be read ({reason})") from exc
                raise
        jobfile.write_spec(tmp, spec)  # last: a job.json means the rest is there
        jobfile.load_job(tmp)  # the generator's own validator accepts it
        os.rename(tmp, job_dir)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputFolderError):
            raise folder_error(exc, directory) from exc
        raise
    return job_dir, warnings
