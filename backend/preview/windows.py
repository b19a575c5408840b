"""Windows around the holes of a frame, for fill_holes (backend/preview/fill.py): rectangles made
of aligned tiles, so that a filler run on each window sees the holes with their context.

Convention: (H, W) bool masks, windows as (rows, cols) slices of the frame, every window starting
on a multiple of `tile` pixels (the fill aligns its push-pull blocks to that). numpy only.
"""

from __future__ import annotations

import numpy as np


def hole_windows(hole: np.ndarray, *, margin: int | None = 128, tile: int = 64):
    """Rectangles covering every hole pixel of `hole` (H, W) bool with `margin` pixels of
    context: the tiles (tile x tile pixels) holding a hole, grown by ceil(margin / tile) tiles,
    cut along empty tile rows and columns, recursively (guillotine cuts).
    A connected hole lies wholly in one rectangle. Returns a list of (rows, cols) slices; one
    rectangle, the frame, when margin is None."""
    H, W = hole.shape
    if margin is None:
        return [(slice(0, H), slice(0, W))]
    th, tw = -(-H // tile), -(-W // tile)
    pad = np.zeros((th * tile, tw * tile), bool)
    pad[:H, :W] = hole
    tiles = pad.reshape(th, tile, tw, tile).any(axis=(1, 3))
    for _ in range(-(-int(margin) // tile)):
        grown = tiles.copy()
        grown[1:] |= tiles[:-1]
        grown[:-1] |= tiles[1:]
        tiles = grown.copy()
        tiles[:, 1:] |= grown[:, :-1]
        tiles[:, :-1] |= grown[:, 1:]
    out = []
    for r0, r1, c0, c1 in _split(tiles, 0, th, 0, tw):
        out.append((slice(r0 * tile, min(r1 * tile, H)), slice(c0 * tile, min(c1 * tile, W))))
    return out


def _split(tiles: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int, int, int]]:
    """Guillotine cuts of tiles[r0:r1, c0:c1] (bool) along empty tile rows and columns, recursively:
    rectangles (r0, r1, c0, c1) that hold every True tile, none of them cut further."""
    sub = tiles[r0:r1, c0:c1]
    rows = _runs(sub.any(axis=1))
    if len(rows) == 1:
        cols = _runs(sub.any(axis=0))
        if len(cols) == 1:
            a, b = rows[0]
            c, d = cols[0]
            return [(r0 + a, r0 + b, c0 + c, c0 + d)]
        return [rect for c, d in cols for rect in _split(tiles, r0, r1, c0 + c, c0 + d)]
    return [rect for a, b in rows for rect in _split(tiles, r0 + a, r0 + b, c0, c1)]


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True in a 1-D bool array."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))
