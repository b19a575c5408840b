"""Bring a finished job's video back into Blender (the bpy writes behind `animate_anything.import_result`).

`import_result(context, job_dir)` reads ``JOB/out/`` (``video.mp4`` or ``frames/NNNN.png``, as
``out/result.json`` says) and adds, all named after the job (``AA <job>``) so that importing the same
job again updates them instead of duplicating them:

- a movie strip (or an image strip for PNG frames) in the Sequencer, on the lowest channel that is
  free over the clip's frames, starting at ``scene.frame_start``;
- an image of source ``MOVIE`` (``SEQUENCE`` for PNG frames) holding every frame;
- that image as the active camera's background image (frame count and start set);
- optionally (``plane=True``) a plane parented to the camera, filling its view at
  ``plane_distance``, with an emission material that shows the image through an Image Texture node.

Every file is checked before anything in ``bpy.data`` is touched (blender_animate.result: a
missing, partial or truncated output raises ResultError and changes nothing); if Blender itself
then fails halfway, everything created so far is removed again and what was changed is restored.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import bpy

from ...blender_animate.result import ResultError, ResultFiles, read_result
from . import compat, result_timing

PREFIX = "AA "
MAX_NAME = 60  # Blender 4.5 ID names hold 63 bytes


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
    """The job's checked out/ folder (blender_animate.result.read_result; `//` paths are made
    absolute). Raises ResultError."""
    return read_result(bpy.path.abspath(str(job_dir)))


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
    except RuntimeError as exc:  # Blender's own load errors: the files changed after the checks
        undo.run()
        raise ResultError(
            f"Blender could not load the result in {files.job_dir / 'out'} ({str(exc).strip()}): its files "
            "changed while importing; nothing was changed. Import it again, or run Generate again"
        ) from None
    except BaseException:
        undo.run()
        raise
    undo.commit()
    return summary


def _import(scene, files: ResultFiles, undo: _Undo, *, strip, background, plane, plane_distance) -> dict:
    warnings = []
    image = _image(files, undo)
    timing = result_timing.timing_for(files.job_dir, files.num_frames)
    strip_name, channel = _strip(scene, files, undo, timing, warnings) if strip else (None, None)
    start = timing.start if timing is not None else scene.frame_start
    cam = scene.camera
    has_camera = cam is not None and cam.type == "CAMERA"
    used_bg = background and has_camera
    if used_bg:
        _camera_background(cam, image, files, start, undo, timing)
    elif background:
        warnings.append("the scene has no active camera: the result was not set as a camera background")
    plane_name = None
    if plane and has_camera:
        plane_name = _plane(scene, cam, image, files, plane_distance, undo, timing).name
    elif plane:
        warnings.append("the scene has no active camera: no camera-facing plane was added")
    if timing is None and files.num_frames > scene.frame_end - scene.frame_start + 1:
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
    name = datablock_name(files.job_dir)
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


def _strip(scene, files: ResultFiles, undo: _Undo, timing=None, warnings=None):
    name = datablock_name(files.job_dir)
    frames = files.frames or sorted((files.job_dir / "out" / "frames").glob("*.png"))
    if timing is not None and len(frames) != files.num_frames:
        warnings.append(
            "the strip plays one video frame per scene frame (out/ has no PNG frames to retime it "
            "with); the camera background and textures are in time with the scene"
        )
        timing = None
    if scene.sequence_editor is None:
        scene.sequence_editor_create()
        undo.add(scene.sequence_editor_clear)
    strips = scene.sequence_editor.strips
    old = strips.get(name)
    start = timing.start if timing is not None else scene.frame_start
    end = start + (timing.span if timing is not None else files.num_frames)
    channel = old.channel if old is not None and _channel_free(strips, old.channel, start, end, old) else None
    if channel is None:
        channel = _free_channel(strips, start, end, skip=old)
    temp = name + " (new)" if old is not None else name
    if timing is not None:  # in time with the scene: the file of i(f) at each scene frame f
        names = [frames[timing.index(f)].name for f in range(start, end)]
        strip = strips.new_image(temp, str(frames[0].parent / names[0]), channel, start, fit_method="FIT")
        strip.directory = blend_path(frames[0].parent) + os.sep
        for frame_name in names[1:]:
            strip.elements.append(frame_name)
    elif files.kind == "movie":
        strip = strips.new_movie(temp, str(files.video), channel, start, fit_method="FIT")
        strip.filepath = blend_path(files.video)
    else:
        strip = strips.new_image(temp, str(files.frames[0]), channel, start, fit_method="FIT")
        strip.directory = blend_path(files.frames[0].parent) + os.sep
        for frame in files.frames[1:]:
            strip.elements.append(frame.name)
    undo.add(_remove_strip, scene, strip.name)
    if compat.strip_duration(strip) != end - start:
        raise ResultError(
            f"the Sequencer reads {compat.strip_duration(strip)} frames from {files.first_file}, "
            f"out/result.json says {files.num_frames}: the output is damaged; run Generate again"
        )
    if old is not None:  # swap once everything else has worked, so a failure keeps the old one
        undo.on_commit(_replace_strip, scene, old.name, strip.name, name, channel)
    _keep_rendering_the_scene(scene, undo)
    return name, channel


def _keep_rendering_the_scene(scene, undo: _Undo) -> None:
    """F12 keeps rendering the 3D scene: with strips in the Sequencer and `use_sequencer` on,
    Blender would render the strips instead (and apply the view transform to the video again).
    When every strip of the scene is one of ours, the render's Sequencer is turned off; a scene
    the artist edits in the Sequencer keeps its setting."""
    render = scene.render
    ours = all(s.name.startswith("AA ") for s in scene.sequence_editor.strips)
    if render.use_sequencer and ours and scene.camera is not None:
        render.use_sequencer = False
        undo.add(setattr, render, "use_sequencer", True)


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
        s_start, s_end = compat.strip_span(s)
        if s_start < end and start < s_end:
            return False
    return True


def _free_channel(strips, start, end, skip=None) -> int:
    """The lowest channel with no strip overlapping frames [start, end)."""
    for channel in range(1, 129):
        if _channel_free(strips, channel, start, end, skip):
            return channel
    raise ResultError("every Sequencer channel is taken over the scene's frames: free one and import again")


def _set_image_user(iu, files: ResultFiles, start: int, timing=None, id_data=None, path="") -> None:
    """Frames of the result on the ImageUser `iu` (at `path` in `id_data`): from `start`, one per
    scene frame, or in time with the scene by a driver (result_timing)."""
    iu.frame_duration = timing.span if timing is not None else files.num_frames
    iu.frame_start = start
    # Movies count frames from 1; our PNG files from 0000 (Blender shows file number
    # frame - frame_start + 1 + frame_offset).
    base = 0 if files.kind == "movie" else -1
    iu.frame_offset = base
    iu.use_auto_refresh = True
    iu.use_cyclic = False
    if id_data is not None and timing is not None:
        result_timing.drive_frame_offset(id_data, path, timing, base)
    elif id_data is not None:
        result_timing.clear_frame_offset_driver(id_data, path)


def _camera_background(cam, image, files: ResultFiles, start: int, undo: _Undo, timing=None):
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
    for other in data.background_images:  # the newest result is shown, older ones hidden
        if other != bg and other.show_background_image and other.image and other.image.name.startswith("AA "):
            other.show_background_image = False
            undo.add(setattr, other, "show_background_image", True)
    path = f"background_images[{list(data.background_images).index(bg)}].image_user"
    _set_image_user(bg.image_user, files, start, timing, data, path)
    if timing is not None:
        undo.add(result_timing.clear_frame_offset_driver, data, path)
    return bg


def _remove_background(data, bg):
    data.background_images.remove(bg)


def _plane(scene, cam, image, files: ResultFiles, distance: float, undo: _Undo, timing=None):
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
    _video_material(mat, image, files, timing.start if timing is not None else scene.frame_start, timing)
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


def _video_material(mat, image, files: ResultFiles, start: int, timing=None) -> None:
    """Image Texture -> Emission -> Material Output, so the plane shows the video unlit."""
    tree = compat.node_tree(mat)
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = "Animate Anything video"
    tex.image = image
    tex.location = (-400, 0)
    _set_image_user(tex.image_user, files, start, timing, tree, f'nodes["{tex.name}"].image_user')
    emit = nodes.new("ShaderNodeEmission")
    emit.location = (-100, 0)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (150, 0)
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    links.new(emit.outputs["Emission"], out.inputs["Surface"])


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
