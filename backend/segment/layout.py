"""picked_layout: the object layout of a picked image (issue 12), found from the image itself.

A rendered reference comes with an object-identity map (conditions.npz object_ids). A picked
image has none, so ``picked_layout(ctx)`` makes one of the same kind: each drag whose start pixel
is not inside a closed outline (outlines win) seeds a region under it, found by SAM 2 (job
segment_model, backend.segment.sam) or else by colour/edge segmentation (backend.segment.regions:
OpenCV GrabCut, or numpy + Pillow). Drags whose seeds fall in one region share its id (a pixel
belongs to the first region that claims it; a later seed inside it joins it). A region that is
empty or larger than the job's object_max_share of the frame is dropped with a warning: its drags
move discs. With job depth_model (Depth Anything V2, backend.segment.depth) and no depth.npy, it
also estimates the image's depth.

The caller (backend/modes/preview.py) puts `object_ids` and `objects` where the rendered ones go,
uses `depth` when it is not None, and reports `warnings` (ctx.warn); nothing here warns itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blender_animate.drags import DEFAULT_OBJECT_MAX_SHARE
from blender_animate.flow import DEFAULT_FALLBACK_DEPTH

from .models import DEPTH_EXAMPLE, SEGMENT_EXAMPLE, ModelUnavailable, resolve_folder


@dataclass
class PickedLayout:
    """object_ids: (H, W) int32 (0 = no region; ids 1..n) or None when nothing was segmented;
    objects: {"<id>": {"name": "region N", "in_clean_plate": True}} (job.json `objects` form; a
    picked image has no clean plate, so nothing is hidden from one); depth: (H, W) float32 planar
    depth in scene units (median = the fallback depth) or None; info: facts for result.json
    (method "sam2" | "opencv" | "numpy", regions [{id, drags, share}], depth model); warnings."""

    object_ids: np.ndarray | None = None
    objects: dict = field(default_factory=dict)
    depth: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def seed_pixels(tracks: np.ndarray, region_masks: np.ndarray, height: int, width: int):
    """(drag indices (n,), seeds (n, 2) int64 pixels (x, y)): the drags whose frame-0 point is in
    the image and not inside any outline of region_masks (R, H, W) bool."""
    start = np.asarray(tracks, np.float64)[:, 0] if len(tracks) else np.zeros((0, 2))
    ix, iy = np.floor(start[:, 0]).astype(np.int64), np.floor(start[:, 1]).astype(np.int64)
    ok = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    masks = np.asarray(region_masks, bool)
    if masks.ndim == 3 and masks.shape[0]:
        ok[ok] = ~masks[:, iy[ok], ix[ok]].any(0)
    which = np.flatnonzero(ok)
    return which, np.stack([ix[which], iy[which]], 1)


def assign_ids(regions, seeds: np.ndarray, drags: np.ndarray, max_share: float):
    """(object_ids (H, W) int32, regions info, warnings) from one (H, W) bool region per seed (None
    for a seed that joined an earlier region unsegmented). First come, first served."""
    H, W = regions[0].shape if regions else (0, 0)
    ids = np.zeros((H, W), np.int32)
    info, warnings, members = [], [], {}
    for k, region in enumerate(regions):
        x, y = int(seeds[k, 0]), int(seeds[k, 1])
        if ids[y, x]:
            members[int(ids[y, x])].append(int(drags[k]))
            continue
        own = region & (ids == 0)
        share = own.sum() / float(H * W)
        if not own[y, x] or share > max_share:
            why = (
                f"covers {share:.0%} of the image, more than the largest object share {max_share:.0%}"
                if own[y, x]
                else "found no region under it"
            )
            warnings.append(
                f"drag {int(drags[k])} on the picked image: the segmentation {why}, so it moves a disc; "
                "draw a closed outline around what it should move"
            )
            continue
        oid = len(members) + 1
        ids[own] = oid
        members[oid] = [int(drags[k])]
        info.append({"id": oid, "share": round(float(share), 4)})
    for entry in info:
        entry["drags"] = members[entry["id"]]
    return ids, info, warnings


def _device(ctx) -> str:
    from ..runtime.devices import resolve_device

    try:
        return resolve_device(ctx.requested_device)
    except Exception:  # noqa: BLE001 - an unavailable device: these small models run on the CPU
        return "cpu"


def _segment(ctx, seeds: np.ndarray, max_pixels: int, warnings: list[str]):
    """One (H, W) bool region per seed (None for seeds inside an earlier one) and the method."""
    spec, image = ctx.spec, ctx.reference
    if spec.segment_model:
        try:
            from .sam import load_sam, sam_masks

            folder = resolve_folder(
                spec.segment_model, allow_download=spec.allow_download, what="SAM 2", example=SEGMENT_EXAMPLE
            )
            ctx.progress("segment", 0, 1, "segmenting the picked image with SAM 2")
            device = _device(ctx)
            model, settings = load_sam(folder, device=device)
            masks = sam_masks(model, settings, image, seeds, device=device)
            ctx.progress("segment", 1, 1, "regions found")
            from .regions import conservative

            return [conservative(m) for m in masks], "sam2"  # its rim stays behind, as below
        except (ModelUnavailable, ImportError, OSError, ValueError) as exc:  # unusable weights: fall back
            warnings.append(f"SAM 2 was not used ({exc}); the regions come from colours and edges")
    from .regions import segment

    regions, method, n = [], "numpy", len(seeds)
    for k, (x, y) in enumerate(seeds):
        ctx.progress("segment", k, n, "finding the region under each drag")
        if any(r is not None and r[y, x] for r in regions):
            regions.append(None)  # inside an earlier region: it joins that one
            continue
        region, method = segment(image, (x, y), max_pixels=max_pixels)
        regions.append(region)
    ctx.progress("segment", n, n, "regions found")
    empty = np.zeros(image.shape[:2], bool)
    return [empty if r is None else r for r in regions], method


def _depth(ctx, warnings: list[str]):
    spec = ctx.spec
    median = spec.fallback_depth if spec.fallback_depth > 0 else DEFAULT_FALLBACK_DEPTH
    try:
        from .depth import estimate_depth, load_depth_model

        folder = resolve_folder(
            spec.depth_model,
            allow_download=spec.allow_download,
            what="Depth Anything V2",
            example=DEPTH_EXAMPLE,
        )
        ctx.progress("depth", 0, 1, "estimating the picked image's depth")
        device = _device(ctx)
        model, settings = load_depth_model(folder, device=device)
        depth = estimate_depth(model, settings, ctx.reference, median, device=device)
        ctx.progress("depth", 1, 1, "depth ready")
        return depth, {"model": str(folder), "median_depth": float(median)}
    except (ModelUnavailable, ImportError, OSError, ValueError) as exc:  # unusable weights: fall back
        warnings.append(
            f"Depth Anything V2 was not used ({exc}); the picked image is treated as a flat plane"
        )
        return None, {"model": None}


def picked_layout(ctx) -> PickedLayout:
    """The object layout of a picked image for a JobContext (module docstring). Does nothing (all
    None) unless job reference_source is "file". Segments only with drag_regions "auto", drags
    starting outside every outline, and conditions.npz object_ids all zero; estimates depth only
    with depth_model set and no depth.npy. Progress stages "segment" and "depth" (cancel checked)."""
    spec, cond = ctx.spec, ctx.cond
    out = PickedLayout()
    if spec.reference_source != "file":
        return out
    H, W = spec.height, spec.width
    if spec.depth_model and ctx.depth is None:
        out.depth, out.info["depth"] = _depth(ctx, out.warnings)
    object_ids = getattr(cond, "object_ids", None)
    if spec.drag_regions != "auto" or not len(cond.tracks) or (object_ids is not None and np.any(object_ids)):
        return out
    drags, seeds = seed_pixels(cond.tracks, cond.region_masks, H, W)
    if not len(seeds):
        return out
    # The fills leak-test against at least the default share, so that a smaller object_max_share
    # drops a region found whole instead of finding a smaller piece of it.
    max_pixels = int(max(spec.object_max_share, DEFAULT_OBJECT_MAX_SHARE) * H * W)
    regions, method = _segment(ctx, seeds, max_pixels, out.warnings)
    ids, info, warnings = assign_ids(regions, seeds, drags, spec.object_max_share)
    out.warnings += warnings
    out.info.update(method=method, regions=info)
    if info:
        out.object_ids = ids
        out.objects = {str(e["id"]): {"name": f"region {e['id']}", "in_clean_plate": True} for e in info}
    return out
