"""Read drag strokes (grease pencil v3 or annotations) and turn them into pixel tracks.

Convention:
- Strokes are taken in world space (object and layer transforms, evaluated at the first frame of
  the range) and projected through the camera of the FIRST job frame (c2w (4,4) OpenCV, K (3,3)
  pixels of the job size, origin top-left, pixel centres at i + 0.5). Tracks therefore live in the
  reference image's pixels: (P, F, 2) float32, visibility (P, F) bool (inside the image), radius
  (P,) float32 pixels.
- An open stroke is one drag: its first point is where the content starts, its last point where it
  ends. The path is resampled over the frames by blender_animate.tracks.build_tracks: evenly by arc
  length ("ARC_LENGTH") or by the points' recorded `delta_time` ("RECORDED").
- A stroke on a grease pencil keyframe after the range start starts moving at the first job frame
  at or after that keyframe; until then it holds its first point. Keyframes after the range end are
  ignored. A stroke repeated unchanged on a later keyframe counts once (at its first keyframe).
- A closed (cyclic) stroke, or one whose material fills, is a region mask (H, W) bool: the area that
  moves with the drags that start inside it (blender_animate.tracks.polygon_mask).
- Radius: every open stroke's track_radius is the panel's Drag Radius, a share of the image
  diagonal (`drag_radius`, default DEFAULT_DRAG_RADIUS = 8 %): radius = share * hypot(W, H)
  pixels. It is the soft disc a drag moves when it starts on no object (the ground, the world, an
  object larger than object_max_share: blender_animate/drags.py). The stroke's thickness (a grease
  pencil point's radius) is not used: its default is about a pixel, invisible as a size.
- Drag starts (`drag_starts`): the first points of the moving drags that no closed outline
  claims (outlines win), which pick the objects of the clean plate (identity.py).
- Problems that are the drawing's (off-screen or behind-the-camera strokes, single points, empty
  layers, hidden layers, points at NaN or infinite coordinates) become warnings naming the stroke,
  never exceptions. A single-point stroke is kept as a static
  pin (it holds the content under it still).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from . import compat

TIMINGS = {"ARC_LENGTH": "arclength", "RECORDED": "time"}
DEFAULT_DRAG_RADIUS = 0.08  # share of the image diagonal (the panel's Drag Radius, in percent there)


class DragSourceError(ValueError):
    """The chosen drag source does not exist; the message says what to pick."""


@dataclass
class WorldStroke:
    """One stroke in world space. points (N, 3) world units; radius (N,) world units or None (the
    stroke's thickness, read but not the drag's size: see the module docstring); times (N,)
    seconds since the stroke started or None; frame: the scene frame
    of its keyframe; closed: a region rather than a drag; label: where it came from, for messages."""

    points: np.ndarray
    radius: np.ndarray | None
    times: np.ndarray | None
    frame: int
    closed: bool
    label: str


@dataclass
class Drags:
    """Tracks (P,F,2) float32, track_visible (P,F) bool, track_radius (P,) float32, region_masks
    (R,H,W) bool, the median planar depth of the drags' first points (0.0 when there are none), the
    strokes read, and warnings for the user."""

    tracks: np.ndarray
    track_visible: np.ndarray
    track_radius: np.ndarray
    region_masks: np.ndarray
    start_depth: float = 0.0
    num_strokes: int = 0
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Reading strokes


def _keyframes_in_range(frames, frame_start: int, frame_end: int) -> list:
    """The keyframes that show during [frame_start, frame_end]: the one holding at frame_start (the
    last at or before it) and every later one up to frame_end, in frame order."""
    ordered = sorted(frames, key=lambda f: f.frame_number)
    before = [f for f in ordered if f.frame_number <= frame_start]
    inside = [f for f in ordered if frame_start < f.frame_number <= frame_end]
    return before[-1:] + inside


def _attribute(drawing, name: str, count: int, dtype, default):
    """A drawing attribute as a flat numpy array (`count` values), `default` when it does not exist."""
    attr = drawing.attributes.get(name)
    if attr is None:
        return np.full(count, default, dtype=dtype)
    buf = np.empty(count, dtype=dtype)
    attr.data.foreach_get("value", buf)
    return buf


def _layer_world_matrix(ob_eval, layer, depsgraph) -> np.ndarray:
    """(4,4) layer -> world: the object's (or the layer parent's) world matrix times the layer's own."""
    local = np.array(layer.matrix_local, dtype=np.float64)
    parent = layer.parent
    if parent is None:
        return np.array(ob_eval.matrix_world, dtype=np.float64) @ local
    parent_eval = parent.evaluated_get(depsgraph)
    parent_world = np.array(parent_eval.matrix_world, dtype=np.float64)
    if parent.type == "ARMATURE" and layer.parent_bone:
        bone = parent_eval.pose.bones.get(layer.parent_bone)
        if bone is not None:  # the bone's pose matrix is in armature space
            parent_world = parent_world @ np.array(bone.matrix, dtype=np.float64)
    return parent_world @ np.array(layer.matrix_parent_inverse, dtype=np.float64) @ local


def _filled_materials(ob) -> np.ndarray:
    """(slots,) bool: which material slots of a grease pencil object fill their strokes."""
    out = []
    for slot in ob.material_slots:
        gp = getattr(slot.material, "grease_pencil", None) if slot.material else None
        out.append(bool(gp is not None and compat.gp_show_fill(gp)))
    return np.array(out, dtype=bool)


def read_grease_pencil(ob, layer_name: str, frame_start: int, frame_end: int, depsgraph):
    """World strokes of grease pencil v3 object `ob` (layer `layer_name`, or every visible layer when
    empty) on the keyframes showing in [frame_start, frame_end]. Returns (strokes, warnings)."""
    if ob is None or ob.type != compat.GP_OBJECT_TYPE:
        raise DragSourceError("the drag object is not a grease pencil object: pick one, or set Drags to None")
    gpd = ob.data
    if layer_name:
        layer = gpd.layers.get(layer_name)
        if layer is None:
            raise DragSourceError(
                f"grease pencil '{ob.name}' has no layer '{layer_name}': pick one of "
                f"{', '.join(repr(l.name) for l in gpd.layers) or 'its layers (it has none)'}"
            )
        layers = [layer]
    else:
        layers = [layer for layer in gpd.layers if not layer.hide]
    warnings = []
    if not layers:
        warnings.append(f"grease pencil '{ob.name}' has no visible layer: nothing to drag")
    ob_eval = ob.evaluated_get(depsgraph)
    filled = _filled_materials(ob)
    strokes: list[WorldStroke] = []
    for layer in layers:
        M = _layer_world_matrix(ob_eval, layer, depsgraph)
        # Object units -> world units for radii: the mean axis scale of the transform.
        radius_scale = float(np.mean(np.linalg.norm(M[:3, :3], axis=0)))
        seen: set[bytes] = set()
        count_before = len(strokes)
        for frame in _keyframes_in_range(layer.frames, frame_start, frame_end):
            drawing = frame.drawing
            n_curves = len(drawing.strokes) if drawing is not None else 0
            if n_curves == 0:  # (an empty drawing lists one curve offset but reads none)
                continue
            offsets = np.empty(n_curves + 1, dtype=np.int32)
            drawing.curve_offsets.foreach_get("value", offsets)
            n_points = int(offsets[-1])
            pos = np.empty(n_points * 3, dtype=np.float32)
            drawing.attributes["position"].data.foreach_get("vector", pos)
            pos = pos.reshape(-1, 3).astype(np.float64)
            world = pos @ M[:3, :3].T + M[:3, 3]
            radius = (
                _attribute(drawing, "radius", n_points, np.float32, 0.01).astype(np.float64) * radius_scale
            )
            delta_time = _attribute(drawing, "delta_time", n_points, np.float32, 0.0).astype(np.float64)
            cyclic = _attribute(drawing, "cyclic", n_curves, bool, False)
            material = _attribute(drawing, "material_index", n_curves, np.int32, 0)
            for c in range(n_curves):
                a, b = int(offsets[c]), int(offsets[c + 1])
                label = f"'{ob.name}' layer '{layer.name}' frame {frame.frame_number} stroke {c + 1}"
                if b <= a:  # a curve without points (a script or another tool made it): not a drag
                    warnings.append(f"{label} has no points: skipped")
                    continue
                key = pos[a:b].tobytes()
                if key in seen:  # the same stroke carried over to a later keyframe
                    continue
                seen.add(key)
                m = int(material[c])
                closed = bool(cyclic[c]) or bool(0 <= m < len(filled) and filled[m])
                times = delta_time[a:b]
                strokes.append(
                    WorldStroke(
                        points=world[a:b],
                        radius=radius[a:b],
                        times=times if np.ptp(times) > 0 else None,
                        frame=int(frame.frame_number),
                        closed=closed,
                        label=label,
                    )
                )
        if len(strokes) == count_before:
            warnings.append(
                f"layer '{layer.name}' of '{ob.name}' has no strokes in frames {frame_start}-{frame_end}"
            )
    return strokes, warnings


def read_annotations(scene, frame_start: int, frame_end: int):
    """World strokes of the scene's annotations (visible, non-ruler layers). Annotation points carry
    only positions: no radius, no timing, never closed. Returns (strokes, warnings)."""
    ann = compat.scene_annotation(scene)
    if ann is None:
        return [], [
            "the scene has no annotations: draw drags with the Annotate tool, or pick a grease pencil"
        ]
    strokes, warnings = [], []
    for layer in ann.layers:
        if layer.annotation_hide or layer.is_ruler:
            continue
        count_before = len(strokes)
        seen: set[bytes] = set()
        for frame in _keyframes_in_range(layer.frames, frame_start, frame_end):
            for i, stroke in enumerate(frame.strokes):
                n = len(stroke.points)
                if n == 0:
                    continue
                co = np.empty(n * 3, dtype=np.float32)
                stroke.points.foreach_get("co", co)
                key = co.tobytes()
                if key in seen:
                    continue
                seen.add(key)
                strokes.append(
                    WorldStroke(
                        points=co.reshape(-1, 3).astype(np.float64),
                        radius=None,
                        times=None,
                        frame=int(frame.frame_number),
                        closed=False,
                        label=f"annotation '{layer.info}' frame {frame.frame_number} stroke {i + 1}",
                    )
                )
        if len(strokes) == count_before:
            warnings.append(
                f"annotation layer '{layer.info}' has no strokes in frames {frame_start}-{frame_end}"
            )
    return strokes, warnings


def collect_strokes(context, source: str, ob, layer_name: str, frame_start: int, frame_end: int):
    """(strokes, warnings) for drag source 'NONE', 'ANNOTATION' or 'GREASE_PENCIL' (`ob` None = every
    visible grease pencil object of the view layer). Object transforms are evaluated at frame_start;
    the scene's frame is restored."""
    if source == "NONE":
        return [], []
    scene = context.scene
    saved = (scene.frame_current, scene.frame_subframe)
    try:
        scene.frame_set(frame_start)
        depsgraph = context.evaluated_depsgraph_get()
        if source == "ANNOTATION":
            return read_annotations(scene, frame_start, frame_end)
        if source != "GREASE_PENCIL":
            raise DragSourceError(f"unknown drag source {source!r}: use NONE, ANNOTATION or GREASE_PENCIL")
        if ob is not None:
            return read_grease_pencil(ob, layer_name, frame_start, frame_end, depsgraph)
        objects = [
            o for o in context.view_layer.objects if o.type == compat.GP_OBJECT_TYPE and o.visible_get()
        ]
        if not objects:
            return [], [
                "there is no visible grease pencil object to read drags from: draw some, or set Drags to None"
            ]
        strokes, warnings = [], []
        for o in objects:
            s, w = read_grease_pencil(o, "", frame_start, frame_end, depsgraph)
            strokes += s
            warnings += w
        return strokes, warnings
    finally:
        scene.frame_set(saved[0], subframe=saved[1])


# ----------------------------------------------------------------------------------------------
# Projecting strokes into tracks


def start_index(frame: float, times: np.ndarray) -> int | None:
    """The first job frame index whose scene time is at or after `frame` (0 for frames before the
    range), or None when `frame` lies after the range."""
    if frame <= times[0] + 1e-6:
        return 0
    idx = int(np.searchsorted(times, frame - 1e-6, side="left"))
    return idx if idx < len(times) else None


def strokes_to_drags(
    strokes: list[WorldStroke],
    c2w0: np.ndarray,
    K0: np.ndarray,
    width: int,
    height: int,
    times: np.ndarray,
    timing: str = "ARC_LENGTH",
    drag_radius: float = DEFAULT_DRAG_RADIUS,
) -> Drags:
    """Project world strokes through the first frame's camera (c2w0 (4,4) OpenCV, K0 (3,3) pixels of
    width x height) and build tracks over len(times) frames (`times`: the scene frame of each job
    frame). `drag_radius`: every track's radius as a share of the image diagonal (0 < share <= 1).
    See the module docstring for the rules."""
    from ...blender_animate.camera import project_points
    from ...blender_animate.tracks import build_tracks, polygon_mask

    if timing not in TIMINGS:
        raise DragSourceError(f"unknown drag timing {timing!r}: use ARC_LENGTH or RECORDED")
    if not (math.isfinite(drag_radius) and 0.0 < drag_radius <= 1.0):
        raise DragSourceError(
            f"the drag radius must be a share of the image diagonal in (0, 1], got {drag_radius}"
        )
    radius_px = float(drag_radius * math.hypot(width, height))
    F = len(times)
    warnings: list[str] = []
    polylines, starts, stroke_times, radii, masks, start_depths = [], [], [], [], [], []
    single = 0
    for stroke in strokes:
        bad = int(np.count_nonzero(~np.isfinite(stroke.points).all(axis=1))) if len(stroke.points) else 0
        if bad:
            warnings.append(
                f"{stroke.label} has {bad} of its {len(stroke.points)} points at NaN or infinite coordinates "
                "(a script or driver set them?): skipped"
            )
            continue
        if stroke.times is not None and not np.isfinite(stroke.times).all():
            warnings.append(f"{stroke.label} has NaN or infinite drawing times: it moves at constant speed")
            stroke = dataclasses.replace(stroke, times=None)
        uv, z = project_points(stroke.points, c2w0, K0)
        if np.any(z <= 1e-9):
            warnings.append(f"{stroke.label} reaches behind the camera at the first frame: skipped")
            continue
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        if stroke.closed:
            if len(uv) < 3:
                warnings.append(f"{stroke.label} is a closed stroke with fewer than 3 points: skipped")
                continue
            mask = polygon_mask(uv, height, width)
            if not mask.any():
                warnings.append(
                    f"{stroke.label} (a region) lies outside the camera's view at the first frame: skipped"
                )
                continue
            masks.append(mask)
            continue
        if not inside.any():
            warnings.append(
                f"{stroke.label} lies entirely outside the camera's view at the first frame: skipped"
            )
            continue
        start = start_index(stroke.frame, times)
        if start is None:
            warnings.append(f"{stroke.label} is on a keyframe after the frame range: skipped")
            continue
        if len(uv) == 1:
            single += 1
        polylines.append(uv)
        starts.append(start)
        stroke_times.append(stroke.times)
        radii.append(radius_px)
        start_depths.append(float(z[0]))
    if single:
        warnings.append(
            f"{single} stroke(s) have a single point: kept as pins that hold the content still; draw a line "
            "from where the content is to where it should go to drag it"
        )
    if polylines:
        tracks, visible, radius = build_tracks(
            polylines,
            F,
            start_frames=starts,
            times=stroke_times,
            radii=radii,
            timing=TIMINGS[timing],
            width=width,
            height=height,
        )
    else:
        tracks = np.zeros((0, F, 2), np.float32)
        visible = np.zeros((0, F), bool)
        radius = np.zeros((0,), np.float32)
    if timing == "RECORDED":
        untimed = sum(1 for t in stroke_times if t is None)
        if untimed:
            warnings.append(f"{untimed} stroke(s) carry no drawing times: they move at constant speed")
    region_masks = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return Drags(
        tracks=tracks,
        track_visible=visible,
        track_radius=radius,
        region_masks=region_masks,
        start_depth=float(np.median(start_depths)) if start_depths else 0.0,
        num_strokes=len(strokes),
        warnings=warnings,
    )


def drag_starts(drags: Drags) -> np.ndarray:
    """(P', 2) float32 job pixels (x, y): the first points of the tracks that move (static pins
    left out) and whose start pixel (floor) lies in no region mask (closed outlines win there), in
    track order. These pick the objects a clean plate hides (identity.plate_objects)."""
    tracks = np.asarray(drags.tracks, np.float32)
    if tracks.shape[0] == 0:
        return np.zeros((0, 2), np.float32)
    start = tracks[:, 0]
    moves = (np.abs(tracks - start[:, None]) > 1e-3).any(axis=(1, 2))
    masks = np.asarray(drags.region_masks, bool)
    claimed = np.zeros(len(start), bool)
    if masks.shape[0]:
        H, W = masks.shape[1:]
        ix, iy = np.floor(start[:, 0]).astype(np.int64), np.floor(start[:, 1]).astype(np.int64)
        inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
        claimed[inside] = masks[:, iy[inside], ix[inside]].any(axis=0)
    return np.ascontiguousarray(start[moves & ~claimed], np.float32)


def read_drags(
    context, settings, c2w0, K0, width: int, height: int, times: np.ndarray, frame_start: int, frame_end: int
):
    """Drags for the scene settings `settings` (scene.animate_anything): collect, then project
    (track radius: the settings' drag_radius, percent of the image diagonal)."""
    strokes, warnings = collect_strokes(
        context, settings.drag_source, settings.drag_object, settings.drag_layer, frame_start, frame_end
    )
    share = getattr(settings, "drag_radius", 100.0 * DEFAULT_DRAG_RADIUS) / 100.0
    drags = strokes_to_drags(strokes, c2w0, K0, width, height, times, settings.drag_timing, share)
    drags.warnings[:0] = warnings
    return drags
