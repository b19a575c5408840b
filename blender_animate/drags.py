"""What each drag moves, and how: the spatial half of the unified flow (numpy only).

A drag is a job track (P, F, 2) in pixels of frame 0's image: object motion as seen from frame
0's camera (tracks.py states the convention). Each frame-0 pixel follows the drags through
*movers*, tried in this order for every drag:

1. an outline: a region mask (a closed stroke) that the drag's start pixel lies in (outlines are
   the explicit choice and win);
2. an object: the id under the drag's start pixel in ``object_ids`` (the object-identity pass, or
   the regions segmented from a picked image), unless it is 0 or covers more than
   ``object_max_share`` of the frame (a ground plane, a wall: not what an artist calls an object);
3. a disc: a soft disc of the drag's radius around its start (1 within radius / 2, smoothstep to 0
   at the radius).

All drags on one outline or object drive it together, with one motion per frame fitted to them
by least squares in frame-0 pixel coordinates: a translation with one drag, a similarity
(rotation, uniform scale, translation) with two, an affine map with three or more (a similarity
when their starts are collinear). Where the drags disagree with their fit by more than
FIT_WARNING_PX a warning says by how much. Where movers overlap, a pixel moves by the weighted mean
of their displacements, scaled by the largest of their weights: two identical drags move pixels
exactly as one does, and opposite drags cancel where they weigh the same.

Pixel coordinates: x right, y down, pixel (i, j) has its centre at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DragField",
    "drag_field",
    "fit_motion",
    "REGION_FEATHER",
    "FIT_WARNING_PX",
    "DEFAULT_OBJECT_MAX_SHARE",
]

# Half-width in pixels of the soft edge given to outline masks (a separable tent filter).
REGION_FEATHER = 2
# A fit that misses one of its drags by more than this (pixels, any frame) is reported.
FIT_WARNING_PX = 2.0
# An object covering more than this share of the frame is background (job.json object_max_share).
DEFAULT_OBJECT_MAX_SHARE = 0.35


@dataclass
class DragField:
    """The drags of a job as movers, computed once per job (independent of the cameras).

    support: (N,) int64 flat indices j * W + i of the frame-0 pixels that move.
    weights: (N, J) float32, how strongly each of them follows each mover (already scaled for
        overlaps, see the module docstring).
    motion: (J, F, 2, 3) float32, per mover and frame the affine map A with displacement
        D_f(x) = A @ [x, y, 1] in frame-0 pixels (translation: only the last column).
    movers: J dicts for people and result.json: kind "outline" | "object" | "disc", drags (track
        indices), fit ("translation" | "similarity" | "affine"), residual_px (largest miss of a
        drag by the fit), and region (outline index), object_id or radius_px.
    warnings: notes (empty outlines, outlines without drags, drags its fit misses)."""

    support: np.ndarray
    weights: np.ndarray
    motion: np.ndarray
    movers: list[dict]
    warnings: list[str] = field(default_factory=list)
    width: int = 0
    _weighted_xy: np.ndarray | None = None

    def at_frames(self, frames) -> DragField:
        """The same movers for the frame indices `frames` only (e.g. [0, f]); shares the arrays."""
        if self.support.size:
            self.image_delta(0, np.eye(3)[:, :2])  # fill the cache once, for every copy
        return dataclasses.replace(self, motion=self.motion[:, frames])

    def image_delta(self, f: int, Hf2: np.ndarray) -> np.ndarray:
        """(N, 3) float32: sum_j w_j(x) Hf2 @ D_jf(x) at the support pixels, with Hf2 (3, 2) the first
        two columns of frame f's homography: the correction unified_flow adds to q (camera.py)."""
        if self._weighted_xy is None:
            W = self.width
            X = np.empty((self.support.size, 3), np.float32)
            X[:, 0] = self.support % W + 0.5
            X[:, 1] = self.support // W + 0.5
            X[:, 2] = 1.0
            J = self.weights.shape[1]
            # (N, J*3): w_j(x) * [x, y, 1], so that the correction is one matrix product per frame.
            self._weighted_xy = (self.weights[:, :, None] * X[:, None, :]).reshape(self.support.size, J * 3)
        P = np.einsum("ck,jkl->jcl", np.asarray(Hf2, np.float64), self.motion[:, f].astype(np.float64))
        Q = P.transpose(0, 2, 1).reshape(-1, 3).astype(np.float32)  # rows (j, l), columns c
        return self._weighted_xy @ Q


def fit_motion(starts: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, str, np.ndarray]:
    """Least-squares motion of n drags. starts (n, 2), targets (n, F, 2) pixels (frame 0's image).
    Returns (A (F, 2, 3) with displacement A @ [x, y, 1], the fit's name, miss (n, F) pixels)."""
    s = np.asarray(starts, np.float64)
    t = np.asarray(targets, np.float64)
    n, F = t.shape[:2]
    centre = s.mean(axis=0)
    spread = np.linalg.svd(s - centre, compute_uv=False) if n > 1 else np.zeros(2)
    M = np.zeros((F, 2, 3))
    if n == 1 or spread[0] < 0.5:  # one drag, or all from (about) one pixel: move by their mean
        kind = "translation"
        M[:, :, :2] = np.eye(2)
        M[:, :, 2] = (t - s[:, None]).mean(axis=0)
    elif n == 2 or spread[1] < 0.5:  # similarity: x' = [[a, -b], [b, a]] x + (tx, ty)
        kind = "similarity"
        D = np.zeros((2 * n, 4))
        D[0::2] = np.stack([s[:, 0], -s[:, 1], np.ones(n), np.zeros(n)], 1)
        D[1::2] = np.stack([s[:, 1], s[:, 0], np.zeros(n), np.ones(n)], 1)
        a, b, tx, ty = np.linalg.pinv(D) @ t.transpose(0, 2, 1).reshape(2 * n, F)  # each (F,)
        M[:, 0] = np.stack([a, -b, tx], 1)
        M[:, 1] = np.stack([b, a, ty], 1)
    else:
        kind = "affine"
        D = np.concatenate([s, np.ones((n, 1))], 1)  # (n, 3)
        X = np.linalg.pinv(D) @ t.reshape(n, F * 2)  # (3, F*2)
        M = X.reshape(3, F, 2).transpose(1, 2, 0)
    fitted = np.einsum("fab,nb->nfa", M, np.concatenate([s, np.ones((n, 1))], 1))
    miss = np.linalg.norm(fitted - t, axis=-1)
    M[:, :, :2] -= np.eye(2)  # the map -> the displacement
    return M.astype(np.float32), kind, miss


def _start_pixels(tracks, height, width):
    """Integer pixel (ix, iy) holding each track's frame-0 position, and whether it is in the image."""
    start = tracks[:, 0].astype(np.float64)
    ix = np.floor(start[:, 0]).astype(np.int64)
    iy = np.floor(start[:, 1]).astype(np.int64)
    inside = (ix >= 0) & (ix < width) & (iy >= 0) & (iy < height)
    return ix, iy, inside


def _smooth_falloff(dist, radius):
    """1 inside radius / 2, 0 from radius on, a smoothstep between: weights of a radial drag."""
    t = np.clip((dist - 0.5 * radius) / (0.5 * radius), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def _box_blur(a, k, axis):
    """Mean over a window of 2k + 1 along ``axis``, via a cumulative sum. Beyond the ends the edge
    values continue (a mask touching the image border stays whole up to it)."""
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (k + 1, k)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    hi = np.take(c, np.arange(2 * k + 1, 2 * k + 1 + n), axis=axis)
    lo = np.take(c, np.arange(0, n), axis=axis)
    return (hi - lo) / np.float32(2 * k + 1)


def _feather(mask, k):
    """A bool mask with a soft edge: a separable tent filter of half-width about k pixels."""
    m = mask.astype(np.float32)
    if k <= 0:
        return m
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return m
    H, W = mask.shape
    # The window reaches 2k + 1 px of zeros beyond the mask wherever that is inside the image, so
    # the edge padding of _box_blur continues zeros there and the mask only at the image border.
    pad = 2 * k + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, H)
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, W)
    sub = m[y0:y1, x0:x1]
    h = max(k // 2, 1)  # two boxes of width 2h + 1 make a tent about 2k + 1 wide
    for axis in (0, 1):
        sub = _box_blur(_box_blur(sub, h, axis), h, axis)
    m[y0:y1, x0:x1] = sub
    return m


def _disc(cx: float, cy: float, R: float, height: int, width: int):
    """(flat indices, weights) of a soft disc of radius R around (cx, cy), or None off the image."""
    x0, x1 = max(int(np.floor(cx - R)), 0), min(int(np.ceil(cx + R)) + 1, width)
    y0, y1 = max(int(np.floor(cy - R)), 0), min(int(np.ceil(cy + R)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5 - cy
    w = _smooth_falloff(np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2), R)
    jj, ii = np.nonzero(w > 0)
    if jj.size == 0:
        return None
    return (jj + y0) * width + (ii + x0), w[jj, ii].astype(np.float32)


def drag_field(
    tracks,
    radius,
    region_masks,
    height: int,
    width: int,
    *,
    region_feather: int = REGION_FEATHER,
    object_ids=None,
    object_max_share: float = DEFAULT_OBJECT_MAX_SHARE,
    object_names=None,
) -> DragField:
    """The movers of the drags (module docstring). tracks (P, F, 2) pixels; radius (P,) or one
    number, pixels; region_masks (R, H, W) bool or None (outlines, given a soft edge of
    ``region_feather`` px); object_ids (H, W) integers or None (0 = no object; objects move with a
    hard edge); ``object_names(id) -> str`` names objects in warnings. Cost is proportional to the
    area that moves, not to H * W * F."""
    tracks = np.asarray(tracks, np.float32)
    P, F = tracks.shape[:2]
    radius = np.broadcast_to(np.asarray(radius, np.float32), (P,))
    name_of = object_names or (lambda oid: f"object {oid}")
    warnings: list[str] = []
    ix, iy, inside = _start_pixels(tracks, height, width)
    groups: list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]] = []  # (mover, drivers, idx, w)
    taken = np.zeros(P, bool)
    masks = np.zeros((0, height, width), bool) if region_masks is None else np.asarray(region_masks, bool)
    if masks.ndim != 3 or masks.shape[1:] != (height, width):
        raise ValueError(f"region_masks must have shape (R, {height}, {width}), got {masks.shape}")
    for r, mask in enumerate(masks):
        drivers = np.zeros(P, bool)
        drivers[inside] = mask[iy[inside], ix[inside]]
        drivers &= ~taken
        if not mask.any():
            warnings.append(f"region {r} is empty (a closed stroke with no pixel inside); it is ignored")
            continue
        if not drivers.any():
            warnings.append(f"region {r} has no drag starting inside it, so it does not move")
            continue
        taken |= drivers
        w = _feather(mask, int(region_feather)).reshape(-1)
        idx = np.flatnonzero(w > 0)
        groups.append(({"kind": "outline", "region": r, "name": f"outline {r}"}, drivers, idx, w[idx]))
    if object_ids is not None:
        ids = np.asarray(object_ids)
        if ids.shape != (height, width):
            raise ValueError(f"object_ids must have shape ({height}, {width}), got {ids.shape}")
        start_id = np.zeros(P, np.int64)
        free = inside & ~taken
        start_id[free] = ids[iy[free], ix[free]]
        for oid in np.unique(start_id[start_id > 0]):
            idx = np.flatnonzero(ids.reshape(-1) == oid)
            drivers = start_id == oid
            share = idx.size / float(height * width)
            if share > object_max_share:
                continue  # background: these drags move discs
            taken |= drivers
            mover = {
                "kind": "object",
                "object_id": int(oid),
                "name": name_of(int(oid)),
                "share": round(share, 4),
            }
            groups.append((mover, drivers, idx, np.ones(idx.size, np.float32)))
    for p in np.flatnonzero(~taken):
        disc = _disc(float(tracks[p, 0, 0]), float(tracks[p, 0, 1]), float(radius[p]), height, width)
        if disc is None:
            continue  # the disc lies outside the image
        drivers = np.zeros(P, bool)
        drivers[p] = True
        mover = {
            "kind": "disc",
            "radius_px": round(float(radius[p]), 2),
            "name": f"disc of {radius[p]:.0f} px",
        }
        groups.append((mover, drivers, *disc))
    movers, motions = [], []
    for mover, drivers, _, _ in groups:
        which = np.flatnonzero(drivers)
        A, kind, miss = fit_motion(tracks[which, 0], tracks[which])
        worst = float(miss.max()) if miss.size else 0.0
        mover.update(drags=[int(p) for p in which], fit=kind, residual_px=round(worst, 3))
        if worst > FIT_WARNING_PX:
            p, f = np.unravel_index(int(np.argmax(miss)), miss.shape)
            warnings.append(
                f"the {which.size} drags on {mover['name']} disagree: the best {kind} motion misses drag "
                f"{int(which[p])} by {worst:.1f} px (frame {int(f)}), and the whole {mover['kind']} moves "
                "by that motion; draw the drags so that one rigid motion can follow them, or outline "
                "the parts that should move apart"
            )
        movers.append(mover)
        motions.append(A)
    J = len(groups)
    if J == 0:
        empty = np.zeros((0, F, 2, 3), np.float32)
        return DragField(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), empty, [], warnings, width)
    total = np.zeros(height * width, np.float32)
    strongest = np.zeros(height * width, np.float32)
    for _, _, idx, w in groups:
        total[idx] += w
        strongest[idx] = np.maximum(strongest[idx], w)  # idx has no repeats within one mover
    support = np.flatnonzero(total > 0)
    pos = np.full(height * width, -1, np.int64)
    pos[support] = np.arange(support.size)
    weights = np.zeros((support.size, J), np.float32)
    for j, (_, _, idx, w) in enumerate(groups):
        weights[pos[idx], j] = w
    weights *= (strongest[support] / total[support])[:, None]
    return DragField(support, weights, np.stack(motions), movers, warnings, width)
