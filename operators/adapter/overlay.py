"""What each drag will move, as shapes for the viewport overlay and the panel's drag list (issue 12).

Geometry in JOB pixels (the reference image's: x right, y down, origin top-left, pixel centres at
i + 0.5), computed once per scene change from the camera at the first frame of the range:
- path (N, 2): the drag stroke projected through camera 0 (its frame-0 image positions);
- arrow (3, 2): a triangle at the path's end pointing along its last segment;
- the region the drag moves, by the generator's rule (blender_animate/drags.py): the closed
  outline its start lies in (outlines win); else, with Moves = Objects, the object under its start
  pixel (`scene.ray_cast` from camera 0 through that pixel, objects hidden from renders skipped),
  unless its silhouette covers more than Object Size of the frame (share estimated by rasterising
  ALL its projected triangles on a coarse grid, COARSE_COLUMNS cells across, no occlusion); else a
  disc of Drag Radius around the start. Several drags on one object or outline share one region.
- An object's silhouette is drawn as its camera-facing triangles (all triangles when none face
  the camera) and their contour edges (edges used by one of them); above MAX_DRAW_TRIANGLES it is
  the convex hull of the projected vertices instead.

`drag_overlay(context)` computes (frame_set: never from a draw callback), `cached(context)` only
reads the cache (None when stale: then a timer recomputes and redraws the 3D views). The cache is
keyed by the scene, camera and the settings read, and cleared on depsgraph updates of objects,
meshes, cameras and grease pencil, and on file load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COARSE_COLUMNS = 96  # grid cells across the job image for the object-share estimate
MAX_DRAW_TRIANGLES = 20000  # above: an object's silhouette is drawn as its convex hull
MAX_RAY_HITS = 8  # objects hidden from renders a drag's ray passes through before giving up
# Saturated hues drawn over a dark halo: readable on light and dark images.
PALETTE = (
    (1.0, 0.55, 0.0),
    (0.0, 0.85, 1.0),
    (1.0, 0.2, 0.75),
    (0.55, 1.0, 0.1),
    (1.0, 0.95, 0.1),
    (0.6, 0.45, 1.0),
)


@dataclass
class Region:
    """What moves: kind "object" | "outline" | "disc"; name (object name, "outline N", "disc of R
    px"); triangles (T, 3, 2) job px (the fill); contour (M, 2, 2) job px line segments; drags (track
    indices); share (objects: their silhouette's share of the frame); radius_px (discs)."""

    kind: str
    name: str
    triangles: np.ndarray
    contour: np.ndarray
    drags: list[int] = field(default_factory=list)
    share: float = 0.0
    radius_px: float = 0.0


@dataclass
class DragShape:
    """One drag: label (the stroke's), path (N, 2) and arrow (3, 2) job px, region (index into
    Overlay.regions), colour (r, g, b) in 0..1."""

    label: str
    path: np.ndarray
    arrow: np.ndarray
    region: int
    colour: tuple[float, float, float]


@dataclass
class Overlay:
    """The drags of a scene in job pixels of width x height; render_wh: the render size whose
    centre crop the job image is."""

    width: int
    height: int
    render_wh: tuple[int, int]
    drags: list[DragShape]
    regions: list[Region]
    warnings: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """(drag label, what it moves) for the panel."""
        return [(d.label, self.regions[d.region].name) for d in self.drags]


# ----------------------------------------------------------------------------------------------
# Pure geometry (numpy)


def arrowhead(path: np.ndarray, size: float) -> np.ndarray:
    """(3, 2): tip at the path's last point, pointing along its last non-zero segment, `size` px
    long and about as wide. A path without length gives a degenerate triangle at its point."""
    p = np.asarray(path, np.float64).reshape(-1, 2)
    tip = p[-1]
    seg = tip - p[:-1]
    lengths = np.linalg.norm(seg, axis=1)
    moving = np.flatnonzero(lengths > 1e-6)
    if moving.size == 0:
        return np.repeat(tip[None], 3, axis=0)
    d = seg[moving[-1]] / lengths[moving[-1]]  # from the last distinct point to the tip
    n = np.array([-d[1], d[0]])
    base = tip - size * d
    return np.stack([tip, base + 0.5 * size * n, base - 0.5 * size * n])


def circle(cx: float, cy: float, r: float, n: int = 48) -> np.ndarray:
    """(n, 2) points on a circle (a closed polygon, last point not repeated)."""
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def fan(poly: np.ndarray) -> np.ndarray:
    """(N - 2, 3, 2) triangles of a convex polygon (N, 2), fanned from its first point."""
    p = np.asarray(poly, np.float64)
    if len(p) < 3:
        return np.zeros((0, 3, 2))
    i = np.arange(1, len(p) - 1)
    return np.stack([np.repeat(p[:1], len(i), 0), p[i], p[i + 1]], axis=1)


def closed_segments(poly: np.ndarray) -> np.ndarray:
    """(N, 2, 2) segments of a closed polygon (N, 2)."""
    p = np.asarray(poly, np.float64)
    return np.stack([p, np.roll(p, -1, axis=0)], axis=1)


def contour_edges(tris: np.ndarray, vert_ids: np.ndarray) -> np.ndarray:
    """(M, 2, 2) the edges used by exactly one of the triangles: tris (T, 3, 2) points, vert_ids
    (T, 3) the mesh vertex of each corner (shared edges are found by vertex ids)."""
    if len(tris) == 0:
        return np.zeros((0, 2, 2))
    corner = np.array([[0, 1], [1, 2], [2, 0]])
    e = np.asarray(vert_ids)[:, corner].reshape(-1, 2)  # (3T, 2)
    key = np.sort(e, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    once = counts[inverse.reshape(-1)] == 1
    pts = np.asarray(tris)[:, corner].reshape(-1, 2, 2)
    return pts[once]


def raster_mask(tris: np.ndarray, width: int, height: int, columns: int = COARSE_COLUMNS) -> np.ndarray:
    """(rows, columns) bool: grid cells of the job image (width x height px) whose centre lies in
    one of the triangles (T, 3, 2) job px; rows = round(columns * height / width). Vectorised over
    the cells of each triangle's bounding box, in chunks of bounded memory."""
    columns = max(int(columns), 1)
    rows = max(int(round(columns * height / max(width, 1))), 1)
    mask = np.zeros((rows, columns), bool)
    t = np.asarray(tris, np.float64).reshape(-1, 3, 2)
    if len(t) == 0:
        return mask
    g = t / np.array([width / columns, height / rows])  # grid units: cell (i, j) centre at +0.5
    lo = np.clip(np.ceil(g.min(axis=1) - 0.5), 0, [columns, rows]).astype(np.int64)
    hi = np.clip(np.floor(g.max(axis=1) - 0.5), -1, [columns - 1, rows - 1]).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)
    n = span[:, 0] * span[:, 1]
    keep = np.flatnonzero(n > 0)
    chunk_cells = 1 << 21
    start = 0
    while start < len(keep):
        stop = start + 1
        total = n[keep[start]]
        while stop < len(keep) and total + n[keep[stop]] <= chunk_cells:  # chunk by cells, not per cell
            total += n[keep[stop]]
            stop += 1
        ids = keep[start:stop]
        start = stop
        cnt = n[ids]
        tri = np.repeat(ids, cnt)
        k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        bw = span[tri, 0]
        cx = lo[tri, 0] + k % bw
        cy = lo[tri, 1] + k // bw
        px, py = cx + 0.5, cy + 0.5
        a, b, c = g[tri, 0], g[tri, 1], g[tri, 2]

        s0, s1, s2 = _side(a, b, px, py), _side(b, c, px, py), _side(c, a, px, py)
        inside = ((s0 >= 0) & (s1 >= 0) & (s2 >= 0)) | ((s0 <= 0) & (s1 <= 0) & (s2 <= 0))
        mask[cy[inside], cx[inside]] = True
    return mask


def _side(p0, p1, px, py):
    """Signed area of (p0, p1, (px, py)), row-wise: which side of the edge p0 -> p1 a point lies."""
    return (p1[:, 0] - p0[:, 0]) * (py - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (px - p0[:, 0])


def job_to_region(points: np.ndarray, frame: np.ndarray, render_wh, job_wh) -> np.ndarray:
    """(..., 2) region pixels of job pixels `points` (..., 2). frame (4, 2): the camera frame's
    corners in region pixels (x right, y UP, Blender's region convention), in the order top-left,
    top-right, bottom-right, bottom-left of the render. The job image is the render centre-cropped
    by blender_animate.camera.rescale_intrinsics' rule: u_job = s * u_render - crop."""
    rw, rh = (float(x) for x in render_wh)
    jw, jh = (float(x) for x in job_wh)
    s = max(jw / rw, jh / rh)
    ox, oy = (s * rw - jw) / 2.0, (s * rh - jh) / 2.0
    p = np.asarray(points, np.float64)
    a = (p[..., 0:1] + ox) / (s * rw)  # 0..1 across the render, left to right
    b = (p[..., 1:2] + oy) / (s * rh)  # 0..1 down the render
    tl, tr, _, bl = (np.asarray(c, np.float64) for c in frame)
    return tl + a * (tr - tl) + b * (bl - tl)


def assign_regions(
    starts: np.ndarray, outline_masks: list[np.ndarray], hit_objects: list[str | None], use_objects: bool
) -> list[tuple[str, object]]:
    """The mover of each drag, the generator's order: ("outline", r) when floor(start) lies in
    outline r's mask (H, W) bool (the first), else ("object", name) when `use_objects` and a small
    enough object was hit (hit_objects[p], None otherwise), else ("disc", p)."""
    out: list[tuple[str, object]] = []
    for p, (x, y) in enumerate(np.asarray(starts, np.float64).reshape(-1, 2)):
        ix, iy = int(math.floor(x)), int(math.floor(y))
        region = None
        for r, mask in enumerate(outline_masks):
            if 0 <= iy < mask.shape[0] and 0 <= ix < mask.shape[1] and mask[iy, ix]:
                region = ("outline", r)
                break
        if region is None and use_objects and hit_objects[p] is not None:
            region = ("object", hit_objects[p])
        out.append(region or ("disc", p))
    return out


# ----------------------------------------------------------------------------------------------
# Reading the scene (bpy)

_cache: dict[tuple, Overlay | None] = {}
_state = {"computing": False, "scheduled": False, "last": None}


def _settings_key(context) -> tuple:
    scene = context.scene
    s = getattr(scene, "animate_anything", None)
    if s is None:
        return (0,)
    cam = scene.camera
    ob = s.drag_object
    names = (
        "drag_source",
        "drag_layer",
        "drag_timing",
        "drag_regions",
        "drag_radius",
        "object_max_share",
        "width",
        "height",
        "num_frames",
        "use_scene_range",
        "frame_start",
        "frame_end",
    )
    values = tuple(getattr(s, n, None) for n in names)
    r = scene.render
    return (
        scene.as_pointer(),
        cam.as_pointer() if cam else 0,
        ob.as_pointer() if ob else 0,
        scene.frame_start,
        scene.frame_end,
        r.resolution_x,
        r.resolution_y,
        r.resolution_percentage,
        values,
    )


def invalidate(*_args) -> None:
    """Forget the computed overlay (scene changes, file load)."""
    _cache.clear()
    _state["last"] = None


def cached(context) -> Overlay | None:
    """The overlay computed for the current scene state; when stale, the last one computed (None
    at first) while a timer computes it outside drawing and redraws the 3D views (not during
    playback: computing sets frames). Cheap: for draw()."""
    key = _settings_key(context)
    if key in _cache:
        return _cache[key]
    _schedule()
    return _state["last"]  # the previous answer until the new one is ready (no flicker)


def _schedule() -> None:
    import bpy

    if _state["scheduled"] or bpy.app.background:
        return
    _state["scheduled"] = True

    def run():
        _state["scheduled"] = False
        screen = getattr(bpy.context, "screen", None)
        if screen is not None and screen.is_animation_playing:
            return None
        try:
            drag_overlay(bpy.context)
        except Exception as exc:  # a broken scene must not break the viewport: say it in the console
            print(f"Animate Anything: the drag overlay could not be computed: {exc}")
            _cache[_settings_key(bpy.context)] = None
        from .ui import redraw_areas

        redraw_areas({"VIEW_3D"})
        return None

    bpy.app.timers.register(run, first_interval=0.05)


def drag_overlay(context) -> Overlay | None:
    """Compute (and cache) the overlay of the scene's drags; None when there is nothing to show
    (no camera, Drags = None, settings the export would refuse). Sets the frame to the range's
    first and back: call it from operators, timers or tests, never from a draw callback."""
    key = _settings_key(context)
    _state["computing"] = True
    try:
        result = _compute(context)
    finally:
        _state["computing"] = False
    if len(_cache) > 8:
        _cache.clear()
    _cache[key] = result
    _state["last"] = result
    return result


def _compute(context) -> Overlay | None:
    from ...blender_animate.camera import project_points
    from ...blender_animate.tracks import polygon_mask
    from . import scene_camera, scene_strokes
    from .settings import frame_range

    scene = context.scene
    s = getattr(scene, "animate_anything", None)
    if s is None or s.drag_source == "NONE":
        return None
    cam = scene.camera
    if cam is None or cam.type != "CAMERA" or cam.data.type != "PERSP":
        return None
    start, end = frame_range(scene, s)
    if end <= start:
        return None
    W, H = int(s.width), int(s.height)
    saved = (scene.frame_current, scene.frame_subframe)
    try:
        samples = scene_camera.read_camera(context, start, end, 2)
        c2w0 = samples.c2w[0]
        K0 = scene_camera.job_intrinsics(samples, W, H)[0]
        times = scene_camera.sample_times(start, end, s.num_frames)
        strokes, warnings = scene_strokes.collect_strokes(
            context, s.drag_source, s.drag_object, s.drag_layer, start, end
        )
        radius_share = getattr(s, "drag_radius", 8.0) / 100.0
        drags, paths, labels, outlines, masks = [], [], [], [], []
        for stroke in strokes:  # one at a time: the export's own rules say which strokes count
            one = scene_strokes.strokes_to_drags([stroke], c2w0, K0, W, H, times, s.drag_timing, radius_share)
            uv, _ = project_points(stroke.points, c2w0, K0)
            if one.region_masks.shape[0]:
                outlines.append(uv)
                masks.append(polygon_mask(uv, H, W))
            elif one.tracks.shape[0]:
                drags.append(one)
                paths.append(uv)
                labels.append(stroke.label)
        radius_px = radius_share * math.hypot(W, H)
        max_share = getattr(s, "object_max_share", 35.0) / 100.0
        use_objects = getattr(s, "drag_regions", "AUTO") != "DISCS"
        scene.frame_set(start)
        depsgraph = context.evaluated_depsgraph_get()
        starts = np.array([d.tracks[0, 0] for d in drags], np.float64).reshape(-1, 2)
        hits: list[str | None] = [None] * len(drags)
        objects: dict[str, tuple] = {}  # name -> (triangles, contour, share)
        if use_objects:
            for p, st in enumerate(starts):
                ob = _object_under(scene, depsgraph, c2w0, K0, st)
                if ob is None:
                    continue
                if ob.name not in objects:
                    objects[ob.name] = _silhouette(ob, depsgraph, c2w0, K0, W, H)
                if objects[ob.name][2] <= max_share:
                    hits[p] = ob.name
    finally:
        scene.frame_set(saved[0], subframe=saved[1])
    movers = assign_regions(starts, masks, hits, use_objects)
    regions: list[Region] = []
    index: dict[tuple, int] = {}
    shapes = []
    diag = math.hypot(W, H)
    for p, mover in enumerate(movers):
        if mover not in index:
            kind, what = mover
            if kind == "outline":
                poly = outlines[what]
                region = Region("outline", f"outline {what}", _polygon_triangles(poly), closed_segments(poly))
            elif kind == "object":
                tris, contour, share = objects[what]
                region = Region("object", what, tris, contour, share=share)
            else:
                ring = circle(starts[p, 0], starts[p, 1], radius_px)
                region = Region(
                    "disc",
                    f"disc of {radius_px:.0f} px",
                    fan(ring),
                    closed_segments(ring),
                    radius_px=radius_px,
                )
            index[mover] = len(regions)
            regions.append(region)
        r = index[mover]
        regions[r].drags.append(p)
        colour = PALETTE[p % len(PALETTE)]
        shapes.append(DragShape(labels[p], paths[p], arrowhead(paths[p], 0.025 * diag), r, colour))
    return Overlay(W, H, (samples.width, samples.height), shapes, regions, warnings)


def _object_under(scene, depsgraph, c2w0, K0, start_px):
    """The object the ray from camera 0 through job pixel `start_px` (x, y) hits first, skipping
    objects hidden from renders (the identity pass does not see them); None for none."""
    from mathutils import Vector

    ray_cv = np.linalg.solve(K0, np.array([start_px[0], start_px[1], 1.0]))
    direction = c2w0[:3, :3] @ ray_cv
    direction /= np.linalg.norm(direction)
    origin = Vector(c2w0[:3, 3])
    d = Vector(direction)
    for _ in range(MAX_RAY_HITS):
        hit, location, _n, _i, ob, _m = scene.ray_cast(depsgraph, origin, d)
        if not hit:
            return None
        original = getattr(ob, "original", ob)
        if not original.hide_render:
            return original
        origin = location + d * 1e-4
    return None


def _silhouette(ob, depsgraph, c2w0, K0, W, H):
    """(triangles (T, 3, 2), contour (M, 2, 2), share) of object `ob` in job pixels at camera 0
    (triangles with a corner behind the camera left out)."""
    from mathutils import geometry

    from ...blender_animate.camera import project_points

    ob_eval = ob.evaluated_get(depsgraph)
    mesh = ob_eval.to_mesh()
    try:
        mesh.calc_loop_triangles()
        nv, nt = len(mesh.vertices), len(mesh.loop_triangles)
        co = np.empty(nv * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        tri = np.empty(nt * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", tri)
    finally:
        ob_eval.to_mesh_clear()
    M = np.array(ob_eval.matrix_world, np.float64)
    world = co.reshape(-1, 3).astype(np.float64) @ M[:3, :3].T + M[:3, 3]
    tri = tri.reshape(-1, 3)
    uv, z = project_points(world, c2w0, K0)
    front_of = z > 1e-6
    tri = tri[front_of[tri].all(axis=1)]
    if len(tri) == 0:
        return np.zeros((0, 3, 2)), np.zeros((0, 2, 2)), 0.0
    tris_uv = uv[tri]
    share = float(raster_mask(tris_uv, W, H).mean())
    # Camera-facing: the outward normal (Blender's winding) points at the camera centre.
    P = world[tri]
    normal = np.cross(P[:, 1] - P[:, 0], P[:, 2] - P[:, 0])
    facing = np.einsum("ij,ij->i", normal, c2w0[:3, 3] - P.mean(axis=1)) > 0
    draw = tri[facing] if facing.any() else tri
    if len(draw) > MAX_DRAW_TRIANGLES:
        used = np.unique(tri)
        hull = [used[i] for i in geometry.convex_hull_2d([tuple(p) for p in uv[used]])]
        poly = uv[hull]
        return fan(poly), closed_segments(poly), share
    return uv[draw], contour_edges(uv[draw], draw), share


def _polygon_triangles(poly: np.ndarray) -> np.ndarray:
    """(T, 3, 2) a triangulation of a closed (possibly concave) polygon (N, 2) job px."""
    from mathutils import Vector, geometry

    if len(poly) < 3:
        return np.zeros((0, 3, 2))
    pts = [Vector((float(x), float(y), 0.0)) for x, y in poly]
    tris = geometry.tessellate_polygon([pts])
    if not tris:
        return fan(poly)
    return np.asarray(poly, np.float64)[np.array(tris, np.int64)]


def _watched(id_) -> bool:
    import bpy

    if isinstance(id_, (bpy.types.Object, bpy.types.Mesh, bpy.types.Camera)):
        return True
    return id_.id_type.startswith("GREASEPENCIL") or id_.id_type == "CURVES"


def _on_depsgraph_update(_scene, depsgraph) -> None:
    if _state["computing"]:
        return  # our own frame_set
    if any(_watched(u.id) for u in depsgraph.updates):
        _cache.clear()


_HANDLERS = []


def register():
    import bpy

    _HANDLERS[:] = [
        (bpy.app.handlers.depsgraph_update_post, bpy.app.handlers.persistent(_on_depsgraph_update)),
        (bpy.app.handlers.load_post, bpy.app.handlers.persistent(invalidate)),
    ]
    for handlers, fn in _HANDLERS:
        handlers.append(fn)


def unregister():
    for handlers, fn in _HANDLERS:
        if fn in handlers:
            handlers.remove(fn)
    _HANDLERS.clear()
    _cache.clear()
    _state["last"] = None
