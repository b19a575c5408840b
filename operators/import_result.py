"""Bring a finished job's video back into Blender: `animate_anything.import_result`.

`import_result(context, job_dir)` reads ``JOB/out/`` (``video.mp4`` or ``frames/NNNN.png``, as
``out/result.json`` says) and adds, all named after the job (``AA <job>``) so that importing the same
job again updates them instead of duplicating them:

- a movie strip (or an image strip for PNG frames) in the Sequencer, on the lowest channel that is
  free over the clip's frames, starting at ``scene.frame_start``;
- an image of source ``MOVIE`` (``SEQUENCE`` for PNG frames) holding every frame;
- that image as the active camera's background image (frame count and start set);
- optionally (``plane=True``) a plane parented to the camera, filling its view at
  ``plane_distance``, with an emission material that shows the image through an Image Texture node.

Every file is checked before anything in ``bpy.data`` is touched (a missing, partial or truncated
output raises ResultError and changes nothing); if Blender itself then fails halfway, everything
created so far is removed again and what was changed is restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import compat

PREFIX = "AA "
MAX_NAME = 60  # Blender 4.5 ID names hold 63 bytes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class ResultError(Exception):
    """The job has no complete output to import; the message says what to do."""


# ----------------------------------------------------------------------------- files (no bpy)
@dataclass
class ResultFiles:
    """A checked ``out/`` folder. kind: "movie" (video is set) or "sequence" (frames are set);
    result: ``out/result.json`` as read."""

    job_dir: Path
    kind: str
    num_frames: int
    width: int
    height: int
    fps: float
    video: Path | None = None
    frames: list[Path] = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return datablock_name(self.job_dir)

    @property
    def first_file(self) -> Path:
        return self.video if self.kind == "movie" else self.frames[0]


def datablock_name(job_dir, suffix: str = "") -> str:
    """``AA <job folder name><suffix>``. A name too long for Blender's 63-byte ID names keeps its
    start and gets a short hash of the whole folder name, so that two jobs never share a name."""
    name = Path(job_dir).name
    base = PREFIX + name
    room = MAX_NAME - len(suffix.encode())
    if len(base.encode()) > room:
        tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:6]
        while len((base + tag).encode()) > room:
            base = base[:-1]
        base += tag
    return base + suffix


def find_result(job_dir) -> ResultFiles:
    """Check a job's ``out/`` folder and return what to import. Raises ResultError."""
    job_dir = Path(bpy.path.abspath(str(job_dir))).resolve()
    out = job_dir / "out"
    if not job_dir.is_dir():
        raise ResultError(f"the job folder {job_dir} does not exist")
    if not out.is_dir():
        partial = sorted(p.name for p in job_dir.glob(".out-partial-*"))
        why = (
            f"a run is still writing it or was stopped ({partial[0]} is there)"
            if partial
            else "the job has not run yet"
        )
        raise ResultError(
            f"{job_dir} has no out/ folder: {why}. Run Generate (or `python -m backend run {job_dir}`) first"
        )
    result_path = out / "result.json"
    try:
        result = json.loads(result_path.read_text("utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{result_path} is missing: the run did not finish; run Generate again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(f"{result_path} is not readable JSON ({exc}): run Generate again") from exc
    if not isinstance(result, dict):
        raise ResultError(f"{result_path} does not hold a JSON object: run Generate again")

    spec = _read_json(job_dir / "job.json")
    num_frames = _int_field(result, spec, "num_frames", result_path)
    width = _int_field(result, spec, "width", result_path)
    height = _int_field(result, spec, "height", result_path)
    fps = float(result.get("fps") or spec.get("fps") or 0) or 24.0

    outputs = result.get("outputs") if isinstance(result.get("outputs"), dict) else result
    video = _output_path(job_dir, outputs.get("video"))
    frames_dir = _output_path(job_dir, outputs.get("frames")) or out / "frames"
    if video is not None:
        _check_mp4(video)
        return ResultFiles(job_dir, "movie", num_frames, width, height, fps, video=video, result=result)
    frames = _check_frames(frames_dir, num_frames, width, height)
    return ResultFiles(job_dir, "sequence", num_frames, width, height, fps, frames=frames, result=result)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_field(result: dict, spec: dict, name: str, where: Path) -> int:
    value = result.get(name, spec.get(name))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ResultError(f"{where} (and job.json) give no valid {name} ({value!r}): run Generate again")
    return value


def _output_path(job_dir: Path, rel) -> Path | None:
    """Output paths in events and result.json are relative to the job folder (``out/video.mp4``)."""
    if not rel:
        return None
    if not isinstance(rel, str):
        raise ResultError(f"out/result.json names an output as {rel!r}, not a path: run Generate again")
    path = (job_dir / rel).resolve()
    if job_dir not in path.parents:
        raise ResultError(f"out/result.json names {rel!r}, which is outside the job folder {job_dir}")
    return path


def _check_mp4(path: Path) -> None:
    """An ISO media file whose top-level boxes fill the file exactly and include ftyp and moov:
    a file cut short (a killed encoder, a copy in progress) fails here."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            boxes, pos = [], 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    break
                box_size, box_type = struct.unpack(">I4s", head[:8])
                if box_size == 1 and len(head) == 16:
                    box_size = struct.unpack(">Q", head[8:16])[0]
                elif box_size == 0:
                    box_size = size - pos
                if box_size < 8:
                    break
                boxes.append(box_type)
                pos += box_size
    except FileNotFoundError:
        raise ResultError(
            f"the video {path} named in out/result.json is missing: run Generate again"
        ) from None
    except OSError as exc:
        raise ResultError(f"cannot read the video {path}: {exc}") from exc
    if pos != size or not boxes or boxes[0] != b"ftyp" or b"moov" not in boxes:
        raise ResultError(f"the video {path} is incomplete or not an MP4 file: run Generate again")


def _check_frames(frames_dir: Path, num_frames: int, width: int, height: int) -> list[Path]:
    """``0000.png`` ... exactly num_frames complete PNG files of the job's size."""
    if not frames_dir.is_dir():
        raise ResultError(f"{frames_dir} is missing and out/result.json names no video: run Generate again")
    frames = [frames_dir / f"{i:04d}.png" for i in range(num_frames)]
    missing = [p.name for p in frames if not p.is_file()]
    if missing:
        raise ResultError(
            f"{frames_dir} lacks {len(missing)} of its {num_frames} frames (first: {missing[0]}): "
            "run Generate again"
        )
    check_frames(frames, width, height)
    return frames


def check_frames(frames: list[Path], width: int, height: int) -> None:
    """Every file is a complete PNG (signature, IHDR, IEND at the end) of width x height."""
    for path in frames:
        try:
            with open(path, "rb") as fh:
                head = fh.read(24)
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - len(PNG_IEND)))
                tail = fh.read()
        except OSError as exc:
            raise ResultError(f"cannot read the frame {path}: {exc}") from exc
        if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or tail != PNG_IEND:
            raise ResultError(f"the frame {path} is not a complete PNG file: run Generate again")
        w, h = struct.unpack(">II", head[16:24])
        if (w, h) != (width, height):
            raise ResultError(f"the frame {path} is {w}x{h}, expected {width}x{height}: run Generate again")


# ----------------------------------------------------------------------------- Blender side
class _Undo:
    """Remembers what an import created or changed so a failure can put everything back."""

    def __init__(self):
        self.actions = []
        self.commits = []

    def add(self, fn, *args):
        self.actions.append((fn, args))

    def on_commit(self, fn, *args):
        self.commits.append((fn, args))

    def commit(self):
        for fn, args in self.commits:
            fn(*args)
        self.commits.clear()
        self.actions.clear()

    def run(self):
        for fn, args in reversed(self.actions):
            try:
                fn(*args)
            except Exception:  # best effort: keep undoing the rest
                pass
        self.actions.clear()


def import_result(
    context,
    job_dir,
    *,
    scene=None,
    strip: bool = True,
    background: bool = True,
    plane: bool = False,
    plane_distance: float = 10.0,
) -> dict:
    """Import a finished job into `scene` (default context.scene). strip/background/plane choose
    what to add (the image is always added). Returns a summary dict: image, strip (name or None),
    channel, frame_start, num_frames, kind ("movie" or "sequence"), filepath, background (bool),
    plane (name or None), warnings (list of str). Raises ResultError, changing nothing, when the
    output is not complete."""
    scene = scene or context.scene
    files = find_result(job_dir)
    undo = _Undo()
    try:
        summary = _import(
            scene, files, undo, strip=strip, background=background, plane=plane, plane_distance=plane_distance
        )
    except BaseException:
        undo.run()
        raise
    undo.commit()
    return summary


def _import(scene, files: ResultFiles, undo: _Undo, *, strip, background, plane, plane_distance) -> dict:
    warnings = []
    image = _image(files, undo)
    strip_name, channel = _strip(scene, files, undo) if strip else (None, None)
    start = scene.frame_start
    cam = scene.camera
    has_camera = cam is not None and cam.type == "CAMERA"
    used_bg = background and has_camera
    if used_bg:
        _camera_background(cam, image, files, start, undo)
    elif background:
        warnings.append("the scene has no active camera: the result was not set as a camera background")
    plane_name = None
    if plane and has_camera:
        plane_name = _plane(scene, cam, image, files, plane_distance, undo).name
    elif plane:
        warnings.append("the scene has no active camera: no camera-facing plane was added")
    if files.num_frames > scene.frame_end - scene.frame_start + 1:
        warnings.append(
            f"the result has {files.num_frames} frames but the scene range is {scene.frame_start}-"
            f"{scene.frame_end}: extend the range to see all of it"
        )
    return {
        "image": image.name,
        "strip": strip_name,
        "channel": channel,
        "frame_start": start,
        "num_frames": files.num_frames,
        "kind": files.kind,
        "filepath": str(files.first_file),
        "background": used_bg,
        "plane": plane_name,
        "warnings": warnings,
    }


def blend_path(path: Path) -> str:
    """A path as Blender should store it: relative to the saved .blend (``//...``) when Blender's
    "Default to Relative Paths" preference is on, else absolute."""
    path = str(path)
    prefs = getattr(bpy.context, "preferences", None)
    relative = prefs is None or prefs.filepaths.use_relative_paths
    if bpy.data.filepath and relative:
        try:
            return bpy.path.relpath(path)
        except ValueError:  # another drive (Windows)
            pass
    return path


def _image(files: ResultFiles, undo: _Undo):
    name = files.name
    path = blend_path(files.first_file)
    source = "MOVIE" if files.kind == "movie" else "SEQUENCE"
    image = bpy.data.images.get(name)
    if image is not None and image.library is None:
        old = (image.filepath, image.source)

        def restore(img=image, old=old):
            img.filepath, img.source = old
            img.reload()

        undo.add(restore)
        image.source = source
        image.filepath = path
        image.reload()
    else:
        image = bpy.data.images.load(path, check_existing=False)
        undo.add(_remove_id, bpy.data.images, image)
        image.name = name
        image.source = source
    if files.kind == "movie" and image.frame_duration != files.num_frames:
        raise ResultError(
            f"Blender reads {image.frame_duration} frames from {path}, out/result.json says "
            f"{files.num_frames}: the video is damaged; run Generate again"
        )
    return image


def _remove_id(collection, idblock):
    collection.remove(idblock)


def _strip(scene, files: ResultFiles, undo: _Undo):
    name = files.name
    if scene.sequence_editor is None:
        scene.sequence_editor_create()
        undo.add(scene.sequence_editor_clear)
    strips = scene.sequence_editor.strips
    old = strips.get(name)
    start = scene.frame_start
    end = start + files.num_frames
    channel = old.channel if old is not None and _channel_free(strips, old.channel, start, end, old) else None
    if channel is None:
        channel = _free_channel(strips, start, end, skip=old)
    temp = name + " (new)" if old is not None else name
    if files.kind == "movie":
        strip = strips.new_movie(temp, str(files.video), channel, start, fit_method="FIT")
        strip.filepath = blend_path(files.video)
    else:
        strip = strips.new_image(temp, str(files.frames[0]), channel, start, fit_method="FIT")
        strip.directory = blend_path(files.frames[0].parent) + os.sep
        for frame in files.frames[1:]:
            strip.elements.append(frame.name)
    undo.add(_remove_strip, scene, strip.name)
    if strip.frame_final_duration != files.num_frames:
        raise ResultError(
            f"the Sequencer reads {strip.frame_final_duration} frames from {files.first_file}, "
            f"out/result.json says {files.num_frames}: the output is damaged; run Generate again"
        )
    if old is not None:  # swap once everything else has worked, so a failure keeps the old one
        undo.on_commit(_replace_strip, scene, old.name, strip.name, name, channel)
    return name, channel


def _replace_strip(scene, old_name, new_name, name, channel):
    strips = scene.sequence_editor.strips
    strips.remove(strips[old_name])
    strip = strips[new_name]
    strip.name = name
    strip.channel = channel


def _remove_strip(scene, name):
    se = scene.sequence_editor
    if se is not None and se.strips.get(name) is not None:
        se.strips.remove(se.strips[name])


def _channel_free(strips, channel, start, end, skip=None) -> bool:
    for s in strips:
        if s == skip or s.channel != channel:
            continue
        if s.frame_final_start < end and start < s.frame_final_end:
            return False
    return True


def _free_channel(strips, start, end, skip=None) -> int:
    """The lowest channel with no strip overlapping frames [start, end)."""
    for channel in range(1, 129):
        if _channel_free(strips, channel, start, end, skip):
            return channel
    raise ResultError("every Sequencer channel is taken over the scene's frames: free one and import again")


def _set_image_user(iu, files: ResultFiles, start: int) -> None:
    iu.frame_duration = files.num_frames
    iu.frame_start = start
    # Movies count frames from 1; our PNG files from 0000 (Blender shows file number
    # frame - frame_start + 1 + frame_offset).
    iu.frame_offset = 0 if files.kind == "movie" else -1
    iu.use_auto_refresh = True
    iu.use_cyclic = False


def _camera_background(cam, image, files: ResultFiles, start: int, undo: _Undo):
    data = cam.data
    bg = next((b for b in data.background_images if b.source == "IMAGE" and b.image == image), None)
    if bg is None:
        bg = data.background_images.new()
        undo.add(_remove_background, data, bg)
    if not data.show_background_images:
        data.show_background_images = True
        undo.add(setattr, data, "show_background_images", False)
    bg.source = "IMAGE"
    bg.image = image
    bg.alpha = 1.0
    bg.frame_method = "FIT"
    bg.show_background_image = True
    _set_image_user(bg.image_user, files, start)
    return bg


def _remove_background(data, bg):
    data.background_images.remove(bg)


def _plane(scene, cam, image, files: ResultFiles, distance: float, undo: _Undo):
    """A quad parented to the camera that fills its view at `distance`, showing the video."""
    name = datablock_name(files.job_dir, " plane")
    frame = [v.copy() for v in cam.data.view_frame(scene=scene)]  # camera space, z < 0
    verts = [(v.x * distance / -v.z, v.y * distance / -v.z, -distance) for v in frame]
    # view_frame order: top-right, bottom-right, bottom-left, top-left
    uvs = [(1.0, 1.0), (1.0, 0.0), (0.0, 0.0), (0.0, 1.0)]

    new_mesh = bpy.data.meshes.new(name)
    undo.add(_remove_id, bpy.data.meshes, new_mesh)
    new_mesh.from_pydata(verts, [], [(3, 2, 1, 0)] if _faces_away(verts) else [(0, 1, 2, 3)])
    uv = new_mesh.uv_layers.new(name="UVMap")
    for loop in new_mesh.loops:
        uv.data[loop.index].uv = uvs[loop.vertex_index]
    new_mesh.update()

    mat = bpy.data.materials.get(name) or _new_material(name, undo)
    _video_material(mat, image, files, scene.frame_start)
    new_mesh.materials.append(mat)

    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "MESH" or obj.library is not None:
        obj = bpy.data.objects.new(name, new_mesh)
        undo.add(_remove_id, bpy.data.objects, obj)
    else:
        old_mesh = obj.data
        undo.add(setattr, obj, "data", old_mesh)
        obj.data = new_mesh
        undo.on_commit(_drop_unused_mesh, old_mesh, new_mesh, name)
    if obj.name not in scene.collection.objects and not any(
        obj.name in c.objects for c in scene.collection.children_recursive
    ):
        scene.collection.objects.link(obj)
    obj.parent = cam
    obj.matrix_parent_inverse.identity()
    obj.location = (0.0, 0.0, 0.0)
    obj.rotation_euler = (0.0, 0.0, 0.0)
    obj.scale = (1.0, 1.0, 1.0)
    obj.hide_render = False
    return obj


def _drop_unused_mesh(old_mesh, new_mesh, name):
    if old_mesh.users == 0 and old_mesh.library is None:
        bpy.data.meshes.remove(old_mesh)
    new_mesh.name = name


def _faces_away(verts) -> bool:
    # Order the quad so its normal points back at the camera (+Z in camera space).
    (ax, ay, _), (bx, by, _), (cx, cy, _) = verts[:3]
    return (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) < 0


def _new_material(name: str, undo: _Undo):
    mat = bpy.data.materials.new(name)
    undo.add(_remove_id, bpy.data.materials, mat)
    return mat


def _video_material(mat, image, files: ResultFiles, start: int) -> None:
    """Image Texture -> Emission -> Material Output, so the plane shows the video unlit."""
    tree = compat.node_tree(mat)
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = "Animate Anything video"
    tex.image = image
    tex.location = (-400, 0)
    _set_image_user(tex.image_user, files, start)
    emit = nodes.new("ShaderNodeEmission")
    emit.location = (-100, 0)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (150, 0)
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])


# ----------------------------------------------------------------------------- operator
class ANIMATE_ANYTHING_OT_import_result(bpy.types.Operator):
    """Bring a finished job's video into the Sequencer and behind the active camera"""

    bl_idname = "animate_anything.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(
        name="Job Folder", description="A job folder with a finished out/ folder", subtype="DIR_PATH"
    )
    strip: bpy.props.BoolProperty(
        name="Sequencer Strip", description="Add the video as a strip in the Sequencer", default=True
    )
    background: bpy.props.BoolProperty(
        name="Camera Background", description="Show the video behind the active camera", default=True
    )
    plane: bpy.props.BoolProperty(
        name="Camera Plane",
        description="Also add a plane in front of the camera textured with the video",
        default=False,
    )
    plane_distance: bpy.props.FloatProperty(
        name="Plane Distance", description="Distance of the plane from the camera", default=10.0, min=0.01
    )

    def invoke(self, context, event):
        if not self.directory:
            last = getattr(getattr(context.scene, "animate_anything", None), "last_job_dir", "")
            if last:
                self.directory = last
            else:
                context.window_manager.fileselect_add(self)
                return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "No job folder given: pick the folder of a finished job")
            return {"CANCELLED"}
        options = import_options(context.scene)
        for name in options:  # what the caller set wins over the scene's Import settings
            if self.properties.is_property_set(name):
                options[name] = getattr(self, name)
        try:
            summary = import_result(context, self.directory, plane_distance=self.plane_distance, **options)
        except ResultError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in summary["warnings"]:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, describe(summary))
        return {"FINISHED"}


def import_options(scene) -> dict:
    """strip/background/plane from the scene's Animate Anything settings (defaults without them)."""
    settings = getattr(scene, "animate_anything", None)
    return {
        "strip": bool(getattr(settings, "import_strip", True)),
        "background": bool(getattr(settings, "import_background", True)),
        "plane": bool(getattr(settings, "import_plane", False)),
    }


def describe(summary: dict) -> str:
    """One line for the status bar: what an import added."""
    parts = [f"{summary['num_frames']} frames as image '{summary['image']}'"]
    if summary["strip"]:
        parts.append(f"strip '{summary['strip']}' on channel {summary['channel']}")
    if summary["background"]:
        parts.append("camera background")
    if summary["plane"]:
        parts.append(f"plane '{summary['plane']}'")
    return "Imported " + ", ".join(parts)


classes = (ANIMATE_ANYTHING_OT_import_result,)
