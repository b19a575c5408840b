"""The scene settings as the operators and panels read them: the frame range, the video's fps, the
output folder, and `settings_problems` (why the settings cannot be exported now).

`settings_problems` is asked by the sidebar's draw() and by the Generate and Export polls (several
times per redraw, in every editor showing the sidebar), and it touches the disk (the motion video)
and walks grease-pencil layers. So its answer is cached per scene, camera and frame range, and
forgotten when something else it reads may have changed: a scene setting (their update callback is
`invalidate`), a camera or grease-pencil datablock (a depsgraph update), a file load.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ...blender_animate import model_limits as limits_rules
from ...blender_animate.checkpoint_files import missing_parts
from . import compat, model_limits, scene_camera
from .preferences import get_preferences

_cache: dict[tuple, list[str]] = {}


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


DEFAULT_UNSAVED_FOLDER = "~/animate_anything"  # the preference's default: a folder that lasts


def unsaved_folder(context=None) -> Path:
    """Where an unsaved file's results go: the add-on preference `unsaved_output_dir` (default
    ~/animate_anything), never Blender's session temporary folder (deleted on quit)."""
    prefs = get_preferences(context)
    folder = getattr(prefs, "unsaved_output_dir", "") or DEFAULT_UNSAVED_FOLDER
    return Path(folder).expanduser()


def output_folder(scene) -> Path:
    """The folder that receives job folders: settings.output_dir (// = next to the .blend; while the
    file is unsaved, `unsaved_folder()`: see `output_warning`)."""
    folder = scene.animate_anything.output_dir or "//animate_anything/"
    if folder.startswith("//") and not bpy.data.filepath:
        return unsaved_folder()
    return Path(bpy.path.abspath(folder))


def output_warning(scene) -> str:
    """The warning Generate and Export give when the results of an unsaved file go to the
    preference's folder ("" when the file is saved or the output folder is absolute)."""
    folder = scene.animate_anything.output_dir or "//animate_anything/"
    if folder.startswith("//") and not bpy.data.filepath:
        return (
            f"the file is not saved: results go to {unsaved_folder()} (set in the add-on preferences); "
            "save the file to keep them next to it"
        )
    return ""


def crop_warning(scene, settings) -> str:
    """The aspect-ratio crop the video's size makes of the camera's render ("" when the aspects
    match within 1 %): the render is centre-cropped to the video's aspect, then resized."""
    r = scene.render
    rw, rh = r.resolution_x * r.pixel_aspect_x, r.resolution_y * r.pixel_aspect_y
    vw, vh = settings.width, settings.height
    if rw <= 0 or rh <= 0 or vw <= 0 or vh <= 0 or abs((rw / rh) / (vw / vh) - 1.0) <= 0.01:
        return ""
    cut = "sides" if vw / vh < rw / rh else "top and bottom"
    return (
        f"the camera frames {r.resolution_x}x{r.resolution_y} but the video is {vw}x{vh}: its {cut} "
        "are cropped; match the aspect ratios to keep the whole view"
    )


# Settings whose hard limits Blender enforces without a word: a typed 2000 frames becomes 1024, a
# width of 7 becomes 16, 16000 becomes 4096. The label each is shown with in the panel.
CLAMPED = {"num_frames": "Frames", "width": "Width", "height": "Height"}


def limit_notes(settings) -> list[str]:
    """A word for Blender's silent clamps: each of CLAMPED that sits at its property's hard limit
    (read from the property itself) is most likely a value Blender clamped there without saying so.
    Not a problem (the value is valid): the panel shows it beside the settings."""
    notes = []
    props = settings.bl_rna.properties
    for name, label in CLAMPED.items():
        prop, value = props[name], getattr(settings, name)
        if value >= prop.hard_max:
            notes.append(f"{label} is {value}, the most it can be: Blender sets a larger value to {value}")
        elif value <= prop.hard_min:
            notes.append(f"{label} is {value}, the least it can be: Blender sets a smaller value to {value}")
    return notes


def picked_depth_notes(context, settings) -> list[str]:
    """With Reference = Image and no Depth Model preference: the lines saying that the picked image
    is a flat plane and how to give it depth (a Depth Anything V2 folder). [] otherwise. A note,
    never a problem: the job runs either way."""
    if getattr(settings, "reference_source", "") != "FILE":
        return []
    if getattr(get_preferences(context), "depth_model", "").strip():
        return []
    return [
        "No depth model: the picked image moves as a flat plane",
        "For depth set Depth Model in the add-on preferences to a",
        "Depth Anything V2 folder (Hugging Face:",
        "depth-anything/Depth-Anything-V2-Small-hf, Apache-2.0)",
    ]


def settings_problems(context, *, fresh: bool = False) -> list[str]:
    """Why the current settings cannot be exported, cheapest checks only (used by poll functions and
    drawn by the panel). [] when export can be tried; the export itself checks the rest. Cached
    (see the module docstring); `fresh`: recompute now (the export does)."""
    scene = context.scene
    key = _cache_key(scene)
    if not fresh and key in _cache:
        return list(_cache[key])
    problems = _problems(context)
    if len(_cache) > 16:
        _cache.clear()
    _cache[key] = problems
    return list(problems)


def _cache_key(scene) -> tuple:
    """What the answer depends on that no update callback or depsgraph update reports in every
    Blender (the bpy module evaluates nothing on its own): the scene, its camera and frame range."""
    if scene is None:
        return (0,)
    cam = scene.camera
    return (scene.as_pointer(), cam.as_pointer() if cam else 0, scene.frame_start, scene.frame_end)


def invalidate(*_args) -> None:
    """Forget every cached answer (an update callback of the scene settings, a file load)."""
    _cache.clear()


def _problems(context) -> list[str]:
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
    # (The guided mode's frame counts are its model's: model_problems below names them.)
    if settings.mode == "animateanything" and settings.num_frames % 4 != 1:
        problems.append(f"{settings.mode} mode needs 4k+1 frames (49 or 81), not {settings.num_frames}")
    problems += model_limits.model_problems(settings)  # the chosen model's sizes, frames, steps
    problems += transformer_file_problems(settings)
    if settings.reference_source == "FILE" and settings.reference_image is None:
        problems.append("No reference image: pick one, or set Reference to Render")
    if settings.drag_source == "GREASE_PENCIL" and settings.drag_object is not None and settings.drag_layer:
        if settings.drag_layer not in {layer.name for layer in settings.drag_object.data.layers}:
            problems.append(f"'{settings.drag_object.name}' has no layer '{settings.drag_layer}'")
    if settings.reference_video and not Path(bpy.path.abspath(settings.reference_video)).is_file():
        problems.append("The motion video does not exist: pick another file or clear it")
    return problems


def transformer_file_problems(settings) -> list[str]:
    """Guided Wan only: the Transformer File must be an existing .safetensors file; a pickled
    checkpoint (.pth, .pt, .bin, .ckpt) is refused with the generator's convert message."""
    value = getattr(settings, "transformer_file", "")
    if settings.mode != "guided" or getattr(settings, "model_family", "") != "wan" or not value:
        return []
    file = Path(bpy.path.abspath(value)).expanduser()
    if file.suffix.lower() in limits_rules.PICKLE_SUFFIXES:
        return [
            f"The transformer file {file.name} is a pickled checkpoint; only .safetensors are loaded. "
            + limits_rules.CONVERT_HINT
        ]
    if file.suffix.lower() != ".safetensors" or not file.is_file():
        return [f"The transformer file {file} does not exist or is not a .safetensors file: pick another"]
    return []


def _read_by_the_checks(id_) -> bool:
    """A datablock whose change can change the answer: cameras (lens type) and grease pencil
    (layer names), as objects or data."""
    if isinstance(id_, bpy.types.Object):
        return id_.type in {"CAMERA", compat.GP_OBJECT_TYPE}
    return isinstance(id_, bpy.types.Camera) or id_.id_type.startswith("GREASEPENCIL")


@bpy.app.handlers.persistent
def _on_depsgraph_update(_scene, depsgraph) -> None:
    if any(_read_by_the_checks(update.id) for update in depsgraph.updates):
        _cache.clear()


_HANDLERS = (
    (bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
    (bpy.app.handlers.load_post, bpy.app.handlers.persistent(invalidate)),
)


def register():
    for handlers, fn in _HANDLERS:
        handlers.append(fn)


def unregister():
    for handlers, fn in _HANDLERS:
        if fn in handlers:
            handlers.remove(fn)
    _cache.clear()


def weights_problems(context, settings) -> list[str]:
    """What is missing for a model mode, checked before anything renders: a model folder set in the
    preferences that does not exist, or a CogVideoX folder with parts missing (the generator's own
    file check, blender_animate.checkpoint_files). A hub id is the generator's to resolve. Wan
    folders are only checked to exist: Wan-Move's transformer may come from a single file. A guided
    folder whose configs say another variant than Model Variant is refused (its sizes differ)."""
    prefs = get_preferences(context)
    mode = settings.mode
    family = getattr(settings, "model_family", "cogvideox") if mode == "guided" else ""
    name = {"guided": "wan_model" if family == "wan" else "cogvideox_model"}.get(mode)
    name = name or {"animateanything": "animateanything_model"}.get(mode)
    if name is None:
        return []
    value = getattr(prefs, name, "")
    if mode == "animateanything" and not value:
        return ["AnimateAnything mode needs trained weights: set AnimateAnything Model in the preferences"]
    looks_like_path = value.startswith(("/", "~", ".", "//")) or "\\" in value or value.count("/") > 1
    if not (value and looks_like_path):
        return []
    folder = Path(bpy.path.abspath(value)).expanduser()
    if not folder.is_dir():
        return [f"the model folder {value} does not exist: fix the path in the add-on preferences"]
    if family == "cogvideox":
        missing = missing_parts(folder)
        if missing:
            shown = "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else "")
            return [
                f"the CogVideoX model folder {value} is incomplete (missing {shown}): download the whole "
                "checkpoint (diffusers layout, safetensors) or pick another folder in the add-on preferences"
            ]
    held = limits_rules.folder_variant(family, folder) if mode == "guided" else None
    chosen = model_limits.variant_of(settings)
    if held is not None and held != chosen.name:
        label = limits_rules.variant(family, held).label
        return [
            f"the model folder {value} holds {label} but Model Variant is {chosen.label}: set Model Variant "
            f"to {label} (its sizes and frames) or pick another folder in the add-on preferences"
        ]
    return []
