"""The reference image (the video's first frame) and its depth, from a picked image or a render.

Convention: images are (H, W, 3) uint8 RGB, top row first, sRGB-encoded; depth is (H, W) float32
planar depth (distance along the camera's view axis, scene units), +inf where nothing was hit.

Size rule (the same as blender_animate.camera.rescale_intrinsics, mode "crop", which the camera
reader applies to K): the source is scaled uniformly by s = max(W / w, H / h) so that it covers the
job's W x H, then the centre is cropped. Colour is resampled with a Lanczos filter (Pillow, bundled
with the extension) over the exact fractional crop box; depth takes the nearest source pixel so
that no depth is invented between a foreground and the background.

Colour from files: byte images (8-bit PNG, JPEG, ...) are used as stored; float images (16-bit PNG,
EXR, HDR, ...) are what Blender holds, linear in its working space, and are encoded with the sRGB
transfer function and clipped to [0, 1] (data images, "Non-Color", are used as stored). Alpha is
dropped, not composited.

Rendering: the scene's engine (Cycles, EEVEE or Workbench) renders the active camera at the job's
first frame: quality "FINAL" at the scene's render size and samples, "PREVIEW" (the Generate
default) with at most PREVIEW_SAMPLES Cycles / PREVIEW_EEVEE_SAMPLES EEVEE samples at the
smallest percentage that still covers the video. A second, cheap render writes the Depth pass
through the compositor to a 32-bit EXR (Cycles with 1 sample, EEVEE through Workbench). The drag
objects are hidden from both renders. Every setting touched is put back, even when a render fails.
Generate runs this in a background Blender on a saved copy of the file (reference_job.py), so the
UI never waits for it. A job's rendered reference also has an object-identity pass and, when a
drag starts on an object, a clean plate (identity.py, which returns the `Rendered` defined here).

Grease pencil is in the colour render (as the scene renders it) but not in the depth: the depth
render turns the view layer's grease pencil off (`use_grease_pencil`). Strokes are mostly drag
instructions, and Blender's grease pencil pass, which merges stroke depth into the Z pass after the
engine, both rounds the whole pass through a 24-bit depth buffer and, when a grease pencil
datablock is in the render but no object draws it (typically the drag strokes' object hidden from
render: the add-on's drag_object pointer still pulls its data into the render depsgraph), writes the
Z pass converted twice (small negative numbers everywhere; seen headless on 4.5 and 5.0).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import compat


class ReferenceImageError(ValueError):
    """The reference image cannot be made; the message says what to change."""


def crop_box(src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> tuple[float, float, float, float, float]:
    """(x0, y0, x1, y1, scale): the centre-crop box in source pixels (continuous coordinates, origin
    at the top-left corner) that maps onto the destination, and the scale s = dst / box size."""
    sw, sh = (float(v) for v in src_wh)
    dw, dh = (float(v) for v in dst_wh)
    s = max(dw / sw, dh / sh)
    bw, bh = dw / s, dh / s
    x0, y0 = (sw - bw) / 2.0, (sh - bh) / 2.0
    return x0, y0, x0 + bw, y0 + bh, s


def crop_resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8 by the centre-crop rule (Lanczos resampling)."""
    try:
        from PIL import Image
    except ImportError:
        raise ReferenceImageError(
            "Pillow is missing from Blender's Python: reinstall the Animate Anything extension "
            "(it bundles Pillow)"
        ) from None
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return np.ascontiguousarray(rgb)
    x0, y0, x1, y1, _ = crop_box((w, h), (width, height))
    img = Image.fromarray(np.ascontiguousarray(rgb))
    out = img.resize((width, height), Image.Resampling.LANCZOS, box=(x0, y0, x1, y1))
    return np.asarray(out, dtype=np.uint8)


def crop_resize_nearest(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, ...) -> (height, width, ...) of the same dtype by the centre-crop rule, nearest source
    pixel: destination pixel centre j + 0.5 maps to source coordinate x0 + (j + 0.5) / s. Depth
    and the object-identity pass (identity.py) both take it, so they stay aligned."""
    h, w = a.shape[:2]
    x0, y0, _, _, s = crop_box((w, h), (width, height))
    cols = np.clip(np.floor(x0 + (np.arange(width) + 0.5) / s).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(y0 + (np.arange(height) + 0.5) / s).astype(np.int64), 0, h - 1)
    return np.ascontiguousarray(a[rows[:, None], cols[None, :]])


def crop_resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w) float32 -> (height, width) float32 by the centre-crop rule, nearest source pixel
    (crop_resize_nearest)."""
    return crop_resize_nearest(np.asarray(depth, np.float32), width, height)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1), clipping out-of-range values."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def image_pixels(image) -> np.ndarray:
    """(H, W, C) float32 of a bpy Image as Blender holds it, top row first (C = image.channels)."""
    w, h = image.size
    if w == 0 or h == 0:
        raise ReferenceImageError(
            f"image '{image.name}' has no pixels (missing or unreadable: {image.filepath or 'no path'}): "
            "pick an image that exists"
        )
    c = image.channels
    buf = np.empty(w * h * c, dtype=np.float32)
    image.pixels.foreach_get(buf)
    return buf.reshape(h, w, c)[::-1]


def image_to_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 sRGB of a bpy Image (see the module docstring for the colour rules)."""
    px = image_pixels(image)
    if px.shape[2] >= 3:
        rgb = px[..., :3]
    else:  # grey (+ alpha): repeat the first channel
        rgb = np.repeat(px[..., :1], 3, axis=2)
    if image.is_float and not image.colorspace_settings.is_data:
        rgb = srgb_encode(rgb)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def reference_from_image(image, width: int, height: int, render_wh: tuple[int, int] | None = None):
    """(rgb (height, width, 3) uint8, warnings) from a picked bpy Image. `render_wh`, the scene's
    render size, only serves the warning when the image's aspect differs from the camera's."""
    if image is None:
        raise ReferenceImageError("no reference image is set: pick an image, or set Reference to Render")
    if image.source not in ("FILE", "GENERATED"):
        raise ReferenceImageError(
            f"image '{image.name}' is a {image.source.lower()} image: pick a still image file (a video's "
            "motion goes in Motion Video)"
        )
    rgb = image_to_rgb(image)
    warnings = []
    h, w = rgb.shape[:2]
    if render_wh is not None:
        rw, rh = render_wh
        if abs((w / h) / (rw / rh) - 1.0) > 0.01:
            warnings.append(
                f"the reference image is {w}x{h} but the camera renders {rw}x{rh}: their aspect ratios "
                "differ, so the image and the camera's view frame different areas"
            )
    if w < width or h < height:
        warnings.append(
            f"the reference image ({w}x{h}) is smaller than the video ({width}x{height}): upscaled"
        )
    return crop_resize_rgb(rgb, width, height), warnings


@dataclass
class Rendered:
    """A rendered reference at the job size (identity.finish, reference_job.ReferenceRender.poll).

    rgb (H, W, 3) uint8; depth (H, W) float32 planar, +inf far; render_wh: the size the scene
    rendered at; warnings. object_ids (H, W) int32 (the identity pass, 0 = no object; None: not
    rendered), objects: job.json's table {"<id>": {"name": str, "in_clean_plate": bool}};
    clean_plate_rgb (H, W, 3) uint8 and clean_plate_depth (H, W) float32 (+inf far): frame 0 with
    the objects whose in_clean_plate is false hidden, None when no drag starts on an object."""

    rgb: np.ndarray
    depth: np.ndarray
    render_wh: tuple[int, int]
    warnings: list[str]
    object_ids: np.ndarray | None = None
    objects: dict = field(default_factory=dict)
    clean_plate_rgb: np.ndarray | None = None
    clean_plate_depth: np.ndarray | None = None

    @property
    def clean_plate(self) -> bool:
        return self.clean_plate_rgb is not None


def _plain(value):
    """A value that does not change with the property: arrays (an object's colour, a vector) are
    live views of the property, so they are copied into a tuple."""
    if type(value).__name__ in ("bpy_prop_array", "Vector", "Color", "Euler", "Quaternion"):
        return tuple(value)
    return value


class _Settings:
    """Save attributes now, put them back (in the saved order) on restore()."""

    def __init__(self):
        self._saved: list[tuple[object, str, object]] = []

    def save(self, obj, *names: str) -> None:
        for name in names:
            if hasattr(obj, name):
                self._saved.append((obj, name, _plain(getattr(obj, name))))

    def restore(self) -> list[str]:
        failed = []
        for obj, name, value in self._saved:
            try:
                if _plain(getattr(obj, name)) != value:
                    setattr(obj, name, value)
            except (TypeError, ValueError, AttributeError) as exc:
                failed.append(f"{name}: {exc}")
        return failed


QUALITIES = ("PREVIEW", "FINAL")
PREVIEW_SAMPLES = 16  # Cycles samples of a Preview reference (at most the scene's own)
PREVIEW_EEVEE_SAMPLES = 4  # EEVEE's: its time goes into anti-aliasing samples, not noise


def drag_objects(context, settings) -> list:
    """The objects whose strokes are drags (never part of the reference): the picked grease pencil
    object, or every grease pencil object of the view layer when none is picked. Annotations never
    render, so they need nothing."""
    if settings is None or settings.drag_source != "GREASE_PENCIL":
        return []
    if settings.drag_object is not None:
        return [settings.drag_object]
    return [o for o in context.view_layer.objects if o.type == compat.GP_OBJECT_TYPE]


def preview_percentage(render, width: int, height: int) -> int:
    """The smallest resolution percentage (never above the scene's) whose render still covers a
    width x height video under the centre-crop rule: the Preview size cap."""
    need = 100.0 * max(width / render.resolution_x, height / render.resolution_y)
    return int(min(render.resolution_percentage, max(1, math.ceil(need - 1e-9))))


def render_reference(context, frame: int, width: int, height: int, *, quality: str = "FINAL", hide=()):
    """Render the active camera at scene frame `frame`, in this process (it blocks: the Generate
    operator renders in a background Blender instead, reference_job.py).

    Returns (rgb (height, width, 3) uint8, depth (height, width) float32, render_wh (w, h), warnings).
    Raises ReferenceImageError for no camera or an engine without a depth pass; the scene's
    settings (and the `hide` objects' hide_render) are restored in every case.
    """
    scene = context.scene
    with tempfile.TemporaryDirectory(prefix="animate_anything_render_") as tmp:
        color_path, depth, warnings = render_passes(
            scene,
            context.view_layer,
            frame,
            Path(tmp),
            width=width,
            height=height,
            quality=quality,
            hide=hide,
        )
        rgb = _read_png(color_path)
    return finish_reference(rgb, depth, scene.camera.data.clip_end, width, height, warnings)


def finish_reference(rgb, depth, clip_end: float, width: int, height: int, warnings=()):
    """The job's (rgb, depth, render_wh, warnings) from the raw colour and depth renders."""
    warnings = list(warnings)
    if depth.shape != rgb.shape[:2]:
        raise ReferenceImageError(
            f"the depth render is {depth.shape[::-1]} but the colour render {rgb.shape[1::-1]}"
        )
    # Background: Cycles/Workbench write 1e10, EEVEE about clip_end. Mark it "far" (+inf).
    depth = np.where(depth >= 0.999 * clip_end, np.inf, depth).astype(np.float32)
    h, w = rgb.shape[:2]
    if w < width or h < height:
        warnings.append(
            f"the render ({w}x{h}) is smaller than the video ({width}x{height}): raise the render resolution "
            "or its percentage for a sharper reference"
        )
    return crop_resize_rgb(rgb, width, height), crop_resize_depth(depth, width, height), (w, h), warnings


def render_passes(scene, view_layer, frame: int, folder: Path, *, width, height, quality="FINAL", hide=()):
    """Render colour (folder/color.png, the scene's look) and planar depth; return (color_path,
    depth (h, w) float32 as rendered, warnings). Needs only bpy and numpy (a background Blender
    runs it, render_child.py).

    Quality "FINAL": the scene's own samples and size. "PREVIEW": at most PREVIEW_SAMPLES (Cycles)
    or PREVIEW_EEVEE_SAMPLES (EEVEE) samples and the size cut to what the video needs
    (`preview_percentage`). Depth is always a cheap pass: Cycles with 1 sample, other engines
    through Workbench (planar depth of the same geometry), never a second full-quality render. The
    `hide` objects (the drags) are hidden from both renders.
    """
    if quality not in QUALITIES:
        raise ReferenceImageError(f"unknown render quality {quality!r}: use one of {', '.join(QUALITIES)}")
    if scene.camera is None:
        raise ReferenceImageError("the scene has no active camera to render the reference from: add one")
    render = scene.render
    if render.engine not in ("CYCLES", "BLENDER_WORKBENCH", compat.eevee_engine_id()):
        raise ReferenceImageError(
            f"the render engine {render.engine} has no depth pass: set it to Cycles, EEVEE or Workbench, "
            "or pick a reference image"
        )
    ims = render.image_settings
    saved = _Settings()
    saved.save(
        render, "filepath", "use_file_extension", "use_sequencer", "use_compositing", "use_single_layer"
    )
    saved.save(render, "use_border", "use_crop_to_border", "use_multiview", "resolution_percentage", "engine")
    saved.save(view_layer, "use_grease_pencil")
    saved.save(ims, *compat.image_format_attrs(ims))
    if render.engine == "CYCLES":
        saved.save(scene.cycles, "samples", "use_adaptive_sampling", "use_denoising")
    eevee = getattr(scene, "eevee", None)
    if eevee is not None:
        saved.save(eevee, "taa_render_samples")
    for ob in hide:
        saved.save(ob, "hide_render")
    frame_saved = (scene.frame_current, scene.frame_subframe)
    images_before = set(bpy.data.images)
    warnings: list[str] = []
    try:
        scene.frame_set(frame)
        for ob in hide:  # drag strokes are instructions, not part of the picture
            ob.hide_render = True
        render.use_sequencer = False  # the strips would replace the camera's view
        render.use_border = False
        render.use_multiview = False
        render.use_single_layer = True
        render.use_file_extension = True
        if quality == "PREVIEW":
            render.resolution_percentage = preview_percentage(render, width, height)
            if render.engine == "CYCLES":
                scene.cycles.samples = min(scene.cycles.samples, PREVIEW_SAMPLES)
            elif eevee is not None and render.engine != "BLENDER_WORKBENCH":
                eevee.taa_render_samples = min(eevee.taa_render_samples, PREVIEW_EEVEE_SAMPLES)
        # 1. Colour, with the scene's own look.
        compat.set_image_format(ims, "PNG")
        ims.color_mode, ims.color_depth = "RGB", "8"
        color_path = folder / "color.png"
        _render_still(scene, color_path)
        # 2. Planar depth through the compositor into a 32-bit EXR, from a cheap pass.
        render.use_compositing = True
        if render.engine == "CYCLES":  # depth needs no noise-free shading
            cycles = scene.cycles
            cycles.samples, cycles.use_adaptive_sampling, cycles.use_denoising = 1, False, False
        else:
            render.engine = "BLENDER_WORKBENCH"
        # Grease pencil stays out of the depth (see the module docstring): without this, a grease
        # pencil datablock in the render depsgraph with no object drawing it (the drag strokes'
        # object hidden from render, but still referenced by scene.animate_anything.drag_object)
        # makes Blender's grease pencil pass convert the Z pass twice: all values negative.
        view_layer.use_grease_pencil = False
        compat.set_image_format(ims, "OPEN_EXR")
        ims.color_mode, ims.color_depth, ims.exr_codec = "RGB", "32", "ZIP"
        depth_path = folder / "depth.exr"
        with compat.depth_to_composite_output(scene, view_layer):
            _render_still(scene, depth_path)
        depth = _read_exr_channel(depth_path)
    finally:
        failed = saved.restore()
        scene.frame_set(frame_saved[0], subframe=frame_saved[1])
        # 4.5's compositor adds a "Viewer Node" image; the render result itself stays, as after F12.
        for image in set(bpy.data.images) - images_before:
            if image.type == "COMPOSITING":
                bpy.data.images.remove(image)
    if failed:
        warnings.append(f"some render settings could not be restored: {'; '.join(failed)}")
    return color_path, depth, warnings


def _render_still(scene, path: Path) -> None:
    scene.render.filepath = str(path)
    result = bpy.ops.render.render(write_still=True, scene=scene.name)
    if "FINISHED" not in result or not path.is_file():
        raise ReferenceImageError(f"rendering the reference failed (nothing written to {path})")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _read_exr_channel(path: Path) -> np.ndarray:
    """(H, W) float32: the first channel of a single-layer EXR, top row first, values as stored."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.colorspace_settings.is_data = True  # no colour conversion of the stored values
        return image_pixels(image)[..., 0].copy()
    finally:
        bpy.data.images.remove(image)
