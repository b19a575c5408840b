"""The object-identity pass and the clean plate of a rendered reference (bpy + numpy only).

Identity pass: which object is under each pixel of the reference. Convention: ids (h, w) int32,
top row first, aligned pixel for pixel with the colour render (same camera, frame and render size;
at the job size both go through the same centre crop, nearest pixel: reference.crop_resize_nearest);
0 = no object (the world, an object hidden from the reference, a grease pencil stroke). Ids are
1..N, numbered in name order among the objects that appear; SceneRender.names maps id -> object
name (job.json `objects`, `objects_table`). Workbench and EEVEE references agree with their depth
pass exactly (that depth is Workbench's too); a Cycles reference's depth is Cycles' own 1-sample
pass, whose pixel-filter jitter can move an edge pixel, and geometry only Cycles makes
(displacement) is not in the ids.

How: a Workbench render of the same view with flat lighting, colour type OBJECT and every object's
`color` set for the render to a code (ID_LEVELS levels per RGB channel, alpha 1), anti-aliasing off
(`scene.display.render_aa = "OFF"`: each pixel shows the one surface at its centre, nothing
blended), no shadow, cavity, outline, specular, depth of field or X-ray, film transparent (alpha 0:
the world), compositor, sequencer, Freestyle and motion blur off, view transform Standard, written
as a 32-bit float EXR and decoded in numpy. A pixel whose colour is not a code of an object we
coloured (a volume's shading, an object whose colour cannot be set) is 0. Instances draw with the
colour of their instancer, so they carry its id (a collection instance: its Empty, which a clean
plate hides with everything it instances). Objects invisible to the camera
(`visible_camera` off) and grease pencil (view layer `use_grease_pencil` off) get no id. Every
setting and every object colour is put back, also when the render fails (reference._Settings).

Clean plate: the drags whose first pixel (job pixels, floor) lies on an object covering at most
`object_max_share` of the job frame pick that object (`plate_objects`, the generator's rule in
blender_animate/drags.py); frame 0 is rendered again with those objects hidden (reference.
render_passes: same camera, quality and size rule) with its depth. The plate objects get
`in_clean_plate: false` in the table.

`render_scene` renders all of it (the background render child and this process both use it);
`finish` brings it to the job size as a `reference.Rendered`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import reference

ID_LEVELS = 64  # code levels per colour channel: k / (ID_LEVELS - 1), k = 0 .. ID_LEVELS - 1
MAX_OBJECTS = ID_LEVELS**3 - 1  # codes 1 .. MAX_OBJECTS (0 = no object)
_CODE_TOLERANCE = 0.25  # a channel further than this (in levels) from a level is no code
DEFAULT_OBJECT_MAX_SHARE = 0.35  # job.json object_max_share's default

_SHADING_OFF = (
    "show_shadows",
    "show_cavity",
    "show_object_outline",
    "show_specular_highlight",
    "use_dof",
    "show_xray",
    "show_backface_culling",
)


def code_colour(code: int) -> tuple[float, float, float, float]:
    """The RGBA object colour (linear, alpha 1) that encodes `code` (1 .. MAX_OBJECTS)."""
    if not 0 < code <= MAX_OBJECTS:
        raise ValueError(f"object code {code} is outside 1 .. {MAX_OBJECTS}")
    n = ID_LEVELS - 1
    r, g, b = code % ID_LEVELS, (code // ID_LEVELS) % ID_LEVELS, code // ID_LEVELS**2
    return (r / n, g / n, b / n, 1.0)


def decode_codes(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) float32 linear RGBA of the identity render -> (h, w) int64 codes; 0 where alpha is
    below 0.5 (the world) or a channel is not within _CODE_TOLERANCE of a code level."""
    scaled = rgba[..., :3].astype(np.float64) * (ID_LEVELS - 1)
    levels = np.rint(scaled)
    exact = (np.abs(scaled - levels) <= _CODE_TOLERANCE).all(axis=-1)
    levels = np.clip(levels, 0, ID_LEVELS - 1).astype(np.int64)
    codes = levels[..., 0] + ID_LEVELS * levels[..., 1] + ID_LEVELS**2 * levels[..., 2]
    return np.where(exact & (rgba[..., 3] >= 0.5), codes, 0)


def render_ids(scene, view_layer, frame: int, folder: Path, *, width, height, quality="FINAL", hide=()):
    """The identity pass at the reference's render size (see the module docstring).

    width, height, quality: the job's, so that the render size is the colour render's
    (reference.preview_percentage for "PREVIEW"). `hide`: objects left out (the drags).
    Returns (ids (h, w) int32, objects {id: bpy Object}, warnings).
    """
    render = scene.render
    ims = render.image_settings
    shading, display, view = scene.display.shading, scene.display, scene.view_settings
    hidden = set(hide)
    saved = reference._Settings()
    saved.save(render, "engine", "film_transparent", "use_compositing", "use_sequencer", "use_freestyle")
    saved.save(render, "use_motion_blur", "filepath", "use_file_extension", "use_border", "use_multiview")
    saved.save(render, "use_single_layer", "resolution_percentage")
    saved.save(ims, *reference.compat.image_format_attrs(ims))
    saved.save(view_layer, "use_grease_pencil")
    saved.save(display, "render_aa")
    saved.save(shading, "light", "color_type", *_SHADING_OFF)
    saved.save(view, "view_transform", "look", "exposure", "gamma", "use_curve_mapping")
    coloured: dict[int, object] = {}
    warnings: list[str] = []
    frame_saved = (scene.frame_current, scene.frame_subframe)
    try:
        scene.frame_set(frame)
        if quality == "PREVIEW":
            render.resolution_percentage = reference.preview_percentage(render, width, height)
        render.engine = "BLENDER_WORKBENCH"
        render.film_transparent = True
        render.use_compositing = render.use_sequencer = render.use_freestyle = False
        render.use_motion_blur = render.use_border = render.use_multiview = False
        render.use_single_layer = render.use_file_extension = True
        view_layer.use_grease_pencil = False
        display.render_aa = "OFF"
        shading.light, shading.color_type = "FLAT", "OBJECT"
        for name in _SHADING_OFF:
            if hasattr(shading, name):
                setattr(shading, name, False)
        view.view_transform, view.look, view.exposure, view.gamma = "Standard", "None", 0.0, 1.0
        view.use_curve_mapping = False
        objects = sorted(bpy.data.objects, key=lambda ob: (ob.library is not None, ob.name_full))
        code = 0
        for ob in objects:
            if ob in hidden or ob.type in ("CAMERA", "LIGHT", "SPEAKER", "LIGHT_PROBE"):
                continue
            if not getattr(ob, "visible_camera", True):  # invisible in the reference
                saved.save(ob, "hide_render")
                ob.hide_render = True
                continue
            if code + 1 > MAX_OBJECTS:
                warnings.append(f"more than {MAX_OBJECTS} objects: the rest get no object id")
                break
            saved.save(ob, "color")
            try:
                ob.color = code_colour(code + 1)
            except (AttributeError, TypeError, ValueError):  # a linked object: read-only
                continue
            code += 1
            coloured[code] = ob
        for ob in hidden:
            saved.save(ob, "hide_render")
            ob.hide_render = True
        reference.compat.set_image_format(ims, "OPEN_EXR")
        ims.color_mode, ims.color_depth, ims.exr_codec = "RGBA", "32", "ZIP"
        path = folder / "ids.exr"
        reference._render_still(scene, path)
        rgba = _read_exr_rgba(path)
    finally:
        failed = saved.restore()
        scene.frame_set(frame_saved[0], subframe=frame_saved[1])
    if failed:
        failed_text = "; ".join(failed)
        warnings.append(f"some settings of the object-identity render could not be restored: {failed_text}")
    codes = decode_codes(rgba)
    codes[codes > code] = 0  # no object of ours has that colour
    present = np.unique(codes)
    present = present[present > 0]
    lut = np.zeros(code + 1, np.int32)  # code -> id 1..N in name order of the objects that appear
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lut[codes], {int(lut[c]): coloured[int(c)] for c in present}, warnings


def _read_exr_rgba(path: Path) -> np.ndarray:
    """(H, W, 4) float32 of an RGBA EXR, top row first, values as stored."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.colorspace_settings.is_data = True
        px = reference.image_pixels(image)
        if px.shape[2] != 4:
            raise reference.ReferenceImageError(f"the object-identity render {path} has no alpha channel")
        return px.copy()
    finally:
        bpy.data.images.remove(image)


def plate_objects(ids: np.ndarray, starts: np.ndarray, max_share: float) -> list[int]:
    """The ids that drags starting at `starts` (P, 2) job pixels (x, y) pick, on the job-size id map
    `ids` (H, W): the id under floor(start), if non-zero and covering at most `max_share` of the
    frame (larger ones are background: blender_animate/drags.py moves a disc there). Sorted."""
    starts = np.asarray(starts, np.float64).reshape(-1, 2)
    H, W = ids.shape
    starts = np.where(np.isfinite(starts), starts, -1.0)  # NaN or inf: outside
    ix, iy = np.floor(starts[:, 0]).astype(np.int64), np.floor(starts[:, 1]).astype(np.int64)
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    picked = np.unique(ids[iy[inside], ix[inside]])
    picked = picked[picked > 0]
    if picked.size == 0:
        return []
    share = np.bincount(ids.reshape(-1), minlength=int(picked.max()) + 1)[picked] / float(H * W)
    return [int(i) for i in picked[share <= max_share]]


@dataclass
class SceneRender:
    """A reference render with its identity pass (and clean plate), at the render size.

    color_path (the PNG), depth (h, w) float32 as rendered, ids (h, w) int32, names {id: object
    name}, plate_ids (the ids hidden from the plate), plate_path / plate_depth (None without a
    plate), clip_end (the camera's, for finish), warnings."""

    color_path: Path
    depth: np.ndarray
    ids: np.ndarray
    names: dict[int, str]
    clip_end: float
    plate_ids: list[int] = field(default_factory=list)
    plate_path: Path | None = None
    plate_depth: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def render_scene(
    scene,
    view_layer,
    frame: int,
    folder: Path,
    *,
    width: int,
    height: int,
    quality: str = "FINAL",
    hide=(),
    drag_starts=None,
    object_max_share: float = DEFAULT_OBJECT_MAX_SHARE,
    progress=None,
) -> SceneRender:
    """Colour + depth (reference.render_passes), the identity pass and, when a drag in
    `drag_starts` ((P, 2) job pixels; None or empty: none) starts on an object, the clean plate
    (folder/plate/color.png + depth). Files go into `folder`. `progress(step)` is called after
    each of the three passes (1, 2, 3; 3 also when there is no plate). See the module docstring."""
    report = progress or (lambda step: None)
    color_path, depth, warnings = reference.render_passes(
        scene, view_layer, frame, folder, width=width, height=height, quality=quality, hide=hide
    )
    report(1)
    ids, objects, id_warnings = render_ids(
        scene, view_layer, frame, folder, width=width, height=height, quality=quality, hide=hide
    )
    report(2)
    warnings += id_warnings
    if ids.shape != depth.shape:
        raise reference.ReferenceImageError(
            f"the object-identity render is {ids.shape[::-1]} but the colour render {depth.shape[::-1]}"
        )
    names = {i: ob.name_full for i, ob in objects.items()}
    out = SceneRender(color_path, depth, ids, names, float(scene.camera.data.clip_end), warnings=warnings)
    if drag_starts is None or len(drag_starts) == 0:
        return out
    picked = plate_objects(reference.crop_resize_nearest(ids, width, height), drag_starts, object_max_share)
    if not picked:
        return out
    plate_folder = folder / "plate"
    plate_folder.mkdir(exist_ok=True)
    out.plate_path, out.plate_depth, plate_warnings = reference.render_passes(
        scene,
        view_layer,
        frame,
        plate_folder,
        width=width,
        height=height,
        quality=quality,
        hide=list(hide) + [objects[i] for i in picked],
    )
    out.plate_ids = picked
    out.warnings += [w for w in plate_warnings if w not in out.warnings]
    report(3)
    return out


def objects_table(names: dict[int, str], plate_ids=()) -> dict[str, dict]:
    """job.json `objects`: {"<id>": {"name": str, "in_clean_plate": bool}}."""
    hidden = set(int(i) for i in plate_ids)
    return {str(i): {"name": n, "in_clean_plate": i not in hidden} for i, n in sorted(names.items())}


def finish(
    rgb,
    depth,
    ids,
    names,
    clip_end,
    width,
    height,
    warnings=(),
    *,
    plate_ids=(),
    plate_rgb=None,
    plate_depth=None,
) -> reference.Rendered:
    """The job-size reference.Rendered of a render: colour and depth by reference.finish_reference,
    ids by the same crop (nearest pixel), the plate likewise."""
    rgb_j, depth_j, render_wh, warnings = reference.finish_reference(
        rgb, depth, clip_end, width, height, warnings
    )
    rendered = reference.Rendered(
        rgb_j,
        depth_j,
        render_wh,
        warnings,
        object_ids=reference.crop_resize_nearest(np.asarray(ids, np.int32), width, height),
        objects=objects_table(names, plate_ids if plate_rgb is not None else ()),
    )
    if plate_rgb is not None:
        if plate_rgb.shape != rgb.shape:
            raise reference.ReferenceImageError(
                f"the clean plate is {plate_rgb.shape[1::-1]} but the reference {rgb.shape[1::-1]}"
            )
        plate = reference.finish_reference(plate_rgb, plate_depth, clip_end, width, height)
        rendered.clean_plate_rgb, rendered.clean_plate_depth = plate[0], plate[1]
    return rendered


def render_job_reference(
    context,
    frame: int,
    width: int,
    height: int,
    *,
    quality: str = "FINAL",
    hide=(),
    drag_starts=None,
    object_max_share: float = DEFAULT_OBJECT_MAX_SHARE,
) -> reference.Rendered:
    """Everything a rendered job needs, in this process (it blocks; Generate and Export Job with a
    UI render in a background Blender instead, reference_job.py): the reference, its depth, the
    identity pass and the clean plate, at the job size. Raises ReferenceImageError."""
    scene = context.scene
    with tempfile.TemporaryDirectory(prefix="animate_anything_render_") as tmp:
        raw = render_scene(
            scene,
            context.view_layer,
            frame,
            Path(tmp),
            width=width,
            height=height,
            quality=quality,
            hide=hide,
            drag_starts=drag_starts,
            object_max_share=object_max_share,
        )
        rgb = reference._read_png(raw.color_path)
        plate_rgb = reference._read_png(raw.plate_path) if raw.plate_path is not None else None
    return finish(
        rgb,
        raw.depth,
        raw.ids,
        raw.names,
        raw.clip_end,
        width,
        height,
        raw.warnings,
        plate_ids=raw.plate_ids,
        plate_rgb=plate_rgb,
        plate_depth=raw.plate_depth,
    )
