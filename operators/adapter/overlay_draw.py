"""The drag overlay's `gpu` draw handler on the 3D view (issue 12): in camera view, each drag's
path, arrowhead and the region that moves with it (adapter/overlay.py computes them, cached).

Split in two so that background mode can test what would be drawn: `primitives(overlay, frame)`
(pure: job pixels -> region pixels, one list of shapes in drawing order) and `issue(prims)` (the gpu
calls; nothing where `compat.gpu_can_draw()` is False). Lines get a dark halo under the drag's
colour, fills are translucent: readable on light and dark images. Registered on register() as a
POST_PIXEL handler of SpaceView3D's WINDOW region, removed on unregister() (with overlay.py's
depsgraph and load handlers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import compat, overlay

FILL_ALPHA = 0.22
HALO = (0.0, 0.0, 0.0, 0.75)
LINE_WIDTH = 2.0
HALO_WIDTH = 4.0


@dataclass
class Primitive:
    """kind "TRIS" (coords (3T, 2)) or "LINES" (coords (2M, 2): segment end points), region pixels;
    colour (r, g, b, a); width px (lines)."""

    kind: str
    coords: np.ndarray
    colour: tuple[float, float, float, float]
    width: float = 1.0


def _lines(segments: np.ndarray, colour, halo: bool = True) -> list[Primitive]:
    coords = np.asarray(segments, np.float32).reshape(-1, 2)
    if len(coords) == 0:
        return []
    out = [Primitive("LINES", coords, HALO, HALO_WIDTH)] if halo else []
    return out + [Primitive("LINES", coords, (*colour, 1.0), LINE_WIDTH)]


def primitives(ov: overlay.Overlay, frame: np.ndarray) -> list[Primitive]:
    """What to draw for overlay `ov` in a region whose camera frame has corners `frame` (4, 2)
    region px (top-left, top-right, bottom-right, bottom-left): per region its translucent fill
    and contour in the colour of its first drag, then per drag its path and arrowhead."""

    def to_region(p):
        return overlay.job_to_region(p, frame, ov.render_wh, (ov.width, ov.height))

    out: list[Primitive] = []
    for region in ov.regions:
        colour = ov.drags[region.drags[0]].colour if region.drags else (1.0, 1.0, 1.0)
        if len(region.triangles):
            out.append(Primitive("TRIS", to_region(region.triangles).reshape(-1, 2), (*colour, FILL_ALPHA)))
        out += _lines(to_region(region.contour), colour)
    for drag in ov.drags:
        path = to_region(drag.path)
        if len(path) > 1:
            out += _lines(np.stack([path[:-1], path[1:]], axis=1), drag.colour)
        out.append(Primitive("TRIS", to_region(drag.arrow), (*drag.colour, 1.0)))
    return out


def camera_frame(context) -> np.ndarray | None:
    """(4, 2) region px of the scene camera's frame (top-left, top-right, bottom-right,
    bottom-left) when this 3D view looks through it, else None."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d

    space, region = context.space_data, context.region
    rv3d = getattr(space, "region_3d", None)
    scene = context.scene
    cam = scene.camera
    if rv3d is None or region is None or cam is None or rv3d.view_perspective != "CAMERA":
        return None
    if getattr(space, "use_local_camera", False) and space.camera not in (None, cam):
        return None
    # view_frame: top-right, bottom-right, bottom-left, top-left, in camera space.
    tr, br, bl, tl = (cam.matrix_world @ v for v in cam.data.view_frame(scene=scene))
    pts = [location_3d_to_region_2d(region, rv3d, v) for v in (tl, tr, br, bl)]
    if any(p is None for p in pts):
        return None
    return np.array([tuple(p) for p in pts], np.float64)


def issue(prims: list[Primitive]) -> int:
    """Draw the primitives with the gpu module; returns how many were drawn (0 where gpu cannot
    draw: background mode)."""
    if not prims or not compat.gpu_can_draw():
        return 0
    return draw_primitives(prims)


def draw_primitives(prims: list[Primitive]) -> int:
    """The gpu calls of `issue`, into the bound framebuffer (a region, or a GPUOffScreen where
    gpu.init() made background drawing possible: the tests). Returns how many were drawn."""
    import gpu
    from gpu_extras.batch import batch_for_shader

    fill = gpu.shader.from_builtin("UNIFORM_COLOR")
    line, wide = compat.line_shader()
    viewport = gpu.state.viewport_get()[2:]
    gpu.state.blend_set("ALPHA")
    try:
        for prim in prims:
            coords = [tuple(p) for p in prim.coords]
            if prim.kind == "TRIS":
                fill.bind()
                fill.uniform_float("color", prim.colour)
                batch_for_shader(fill, "TRIS", {"pos": coords}).draw(fill)
                continue
            line.bind()
            if wide:
                line.uniform_float("viewportSize", viewport)
                line.uniform_float("lineWidth", prim.width)
            else:
                gpu.state.line_width_set(prim.width)
            line.uniform_float("color", prim.colour)
            batch_for_shader(line, "LINES", {"pos": coords}).draw(line)
    finally:
        gpu.state.blend_set("NONE")
        if not wide:
            gpu.state.line_width_set(1.0)
    return len(prims)


def draw_callback() -> int:
    """The POST_PIXEL handler: draws the cached overlay when the view looks through the scene
    camera and Show Drags is on. Returns how many primitives it drew (0: nothing to draw)."""
    import bpy

    context = bpy.context
    settings = getattr(context.scene, "animate_anything", None)
    if settings is None or not getattr(settings, "show_drag_overlay", True):
        return 0
    if getattr(context, "space_data", None) is None:
        return 0
    frame = camera_frame(context)
    if frame is None:
        return 0
    ov = overlay.cached(context)
    if ov is None:
        return 0
    return issue(primitives(ov, frame))


_handle: list = []


def register():
    import bpy

    overlay.register()
    _handle.append(bpy.types.SpaceView3D.draw_handler_add(draw_callback, (), "WINDOW", "POST_PIXEL"))


def unregister():
    import bpy

    while _handle:
        bpy.types.SpaceView3D.draw_handler_remove(_handle.pop(), "WINDOW")
    overlay.unregister()
