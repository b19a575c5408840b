"""Region masks cut to the dragged object's depth, so that background inside an outline stays.

A region mask (a closed grease-pencil outline around an object, with a drag starting inside it)
moves every pixel inside it (blender_animate.flow.drag_weights). An outline drawn around an object
also encloses some of what lies behind it (floor, wall, sky). Moved along, that background is
splatted in front of the far scene as "fins" (and, reprojected with its own, larger depth, it does
not even stay with the object), and the region's feathered edge stretches it into speckles.

With a depth map, `depth_gated_regions` keeps, of every region that has a drag starting inside it,
only the pixels no farther than the farthest drag start x REGION_DEPTH_RATIO (content in front of
the object stays in). Such a region follows depth edges, so the preview gives it a hard edge
instead of the usual feather. The object's anti-aliased rim (colour of the object, depth of
neither) would stay behind as a ghost outline: the pixels of the outline within REGION_RIM pixels
of the cut are returned as a rim for the splatter to leave out, and the hole filler fills them from
the background. Regions without a finite depth at their drags, and jobs without a depth map, are
left as they are. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A pixel inside an outline moves with the drag when its depth is at most this many times the
# depth at the farthest drag start inside the outline (a sphere's rim is ~1.1x its nearest point).
REGION_DEPTH_RATIO = 1.2
# Width in pixels of the rim around a cut region that is left out of the splatting.
REGION_RIM = 2


@dataclass
class GatedRegions:
    """masks: (R, H, W) bool, the regions to move. removed: pixels taken out of them in all.
    hard_edge: every region that moves was cut at depth edges (give unified_flow
    region_feather=0). rim: (H, W) bool, frame-0 pixels to leave out of the splatting (the
    object's anti-aliased rim), or None."""

    masks: np.ndarray
    removed: int
    hard_edge: bool
    rim: np.ndarray | None


def depth_gated_regions(
    masks: np.ndarray,
    depth: np.ndarray | None,
    tracks: np.ndarray,
    *,
    ratio: float = REGION_DEPTH_RATIO,
    rim: int = REGION_RIM,
) -> GatedRegions:
    """masks (R, H, W) bool, depth (H, W) planar depth of frame 0 (inf/NaN/<= 0: far) or None,
    tracks (P, F, 2) pixels. Each region with a drag starting inside it is cut to the pixels no
    farther than ratio x the farthest finite depth at those drags' start pixels (see GatedRegions).
    A region keeps its pixels if the cut would leave none of them or its drags have no finite
    depth."""
    masks = np.asarray(masks, bool)
    if depth is None or masks.shape[0] == 0 or len(tracks) == 0:
        return GatedRegions(masks, 0, False, None)
    H, W = masks.shape[1:]
    z = np.asarray(depth, np.float32)
    start = np.floor(np.asarray(tracks, np.float64)[:, 0]).astype(np.int64)
    ix, iy = start[:, 0], start[:, 1]
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    ix, iy = ix[inside], iy[inside]
    out = masks.copy()
    removed = 0
    hard = True
    left_out = np.zeros((H, W), bool)
    for r, mask in enumerate(masks):
        drives = mask[iy, ix]
        zs = z[iy[drives], ix[drives]]
        zs = zs[np.isfinite(zs) & (zs > 0)]
        if zs.size == 0:
            hard &= not drives.any()  # a moving region that is not cut keeps its soft edge
            continue
        with np.errstate(invalid="ignore"):
            keep = mask & np.isfinite(z) & (z > 0) & (z <= np.float32(zs.max() * ratio))
        if not keep.any():
            hard = False
            continue
        removed += int(mask.sum() - keep.sum())
        out[r] = keep
        left_out |= grow(keep, rim) & mask & ~keep
    moving = out.any(axis=0)
    left_out &= ~moving
    return GatedRegions(out, removed, hard, left_out if left_out.any() else None)


def grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """`mask` (H, W) bool dilated `steps` times by the 3x3 square (array shifts, no loop over pixels)."""
    out = mask.copy()
    for _ in range(max(0, steps)):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        out = grown.copy()
        out[:, 1:] |= grown[:, :-1]
        out[:, :-1] |= grown[:, 1:]
    return out
