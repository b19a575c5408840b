"""Drag tracks: from drawn polylines (pixels of frame 0) to per-frame point tracks, and region masks.

Convention: positions are continuous pixel coordinates (x right, y down) with the origin at the
top-left image corner; pixel (i, j) covers [i, i + 1) x [j, j + 1) and has its centre at
(i + 0.5, j + 0.5). Tracks are (P, F, 2) float32, visibility (P, F) bool, radius (P,) float32 pixels.

Track convention (the whole project's; docs/interfaces.md "Track convention"): these are JOB
tracks, object motion in frame-0 image space. ``T_f`` is where the dragged content would be at frame
f if the camera stayed at frame 0; the camera's own motion is separate (c2w, K), so a static pin is
a constant track whatever the camera does. The visibility built here only says whether ``T_f`` lies
inside the frame-0 image. The learned models (AnimateAnything's stage 1, Wan-Move) take SCREEN
tracks instead, where the point is seen in frame f's image (camera motion included, as a point
tracker measures it and as training samples it from ground-truth flow). track_space.screen_tracks
is the one conversion (T_f lifted with the depth of its start pixel into camera 0, projected by
camera f: where flow.unified_flow sends the drag's start pixel) and gives the screen visibility.

Timing: a track holds its stroke's first point until its start frame, then runs along the stroke and
reaches the stroke's last point at the final frame (F - 1). Along the way its speed follows either the
arc length (constant speed, the default) or the drawing times of the points (a monotone cubic, PCHIP,
through (time, position); the stroke's time span is stretched to the frames it runs over).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_RADIUS", "pchip_interpolate", "resample_stroke", "build_tracks", "polygon_mask"]

DEFAULT_RADIUS = 8.0  # pixels; also the default of job.Conditions.create and flow.unified_flow


def pchip_interpolate(x: np.ndarray, y: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Monotone piecewise cubic Hermite interpolation (Fritsch-Carlson, as scipy's PchipInterpolator).

    x: (N,) strictly increasing; y: (N,) or (N, C); xq: (M,) queries, clamped to [x[0], x[-1]] (no
    extrapolation). Returns (M,) or (M, C) float64. Keeps monotone data monotone and never overshoots."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xq = np.clip(np.asarray(xq, np.float64), x[0], x[-1])
    squeeze = y.ndim == 1
    if squeeze:
        y = y[:, None]
    n = x.shape[0]
    if n < 2:
        out = np.broadcast_to(y[:1], (xq.shape[0], y.shape[1])).copy()
        return out[:, 0] if squeeze else out
    if np.any(np.diff(x) <= 0):
        raise ValueError("pchip_interpolate needs strictly increasing x")
    h = np.diff(x)[:, None]
    delta = np.diff(y, axis=0) / h
    m = np.zeros_like(y)
    if n == 2:
        m[:] = delta[0]
    else:
        # Interior: weighted harmonic mean of the neighbouring slopes when they share a sign, else 0.
        w1 = 2 * h[1:] + h[:-1]
        w2 = h[1:] + 2 * h[:-1]
        d0, d1 = delta[:-1], delta[1:]
        same = (np.sign(d0) * np.sign(d1)) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            hm = (w1 + w2) / (w1 / d0 + w2 / d1)
        m[1:-1] = np.where(same, hm, 0.0)
        m[0] = _pchip_end(h[0], h[1], delta[0], delta[1])
        m[-1] = _pchip_end(h[-1], h[-2], delta[-1], delta[-2])
    k = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, n - 2)
    hk = h[k]
    t = ((xq - x[k]) / hk[:, 0])[:, None]
    t2, t3 = t * t, t * t * t
    out = (
        (2 * t3 - 3 * t2 + 1) * y[k]
        + (t3 - 2 * t2 + t) * hk * m[k]
        + (-2 * t3 + 3 * t2) * y[k + 1]
        + (t3 - t2) * hk * m[k + 1]
    )
    return out[:, 0] if squeeze else out


def _pchip_end(h0, h1, d0, d1):
    """One-sided three-point end slope, shape-preserving (the rule scipy uses)."""
    d = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    d = np.where(np.sign(d) != np.sign(d0), 0.0, d)
    return np.where((np.sign(d0) != np.sign(d1)) & (np.abs(d) > np.abs(3 * d0)), 3 * d0, d)


def resample_stroke(
    points: np.ndarray,
    num_frames: int,
    *,
    start_frame: int = 0,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of one drag at every frame.

    points: (N, 2) pixel polyline (frame-0 image coordinates), N >= 1. num_frames: F >= 1.
    start_frame: the frame at which the motion starts (0 <= start_frame < F); before it the track
    holds ``points[0]``. times: optional (N,) drawing times in seconds (any origin), non-decreasing;
    when given, the position follows a PCHIP of (time, position) with the stroke's time span mapped
    linearly onto frames [start_frame, F - 1]; otherwise points are evenly spaced by arc length.
    Repeated points (zero-length segments, equal times) are merged, keeping the later one.

    Returns (F, 2) float64; row start_frame is ``points[0]``, row F - 1 is ``points[-1]`` (a single
    point, or a stroke of zero length, gives a static track). If start_frame == F - 1 the track jumps
    to the last point at the last frame."""
    p = np.asarray(points, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 1:
        raise ValueError(f"a stroke must be an (N, 2) array of pixel positions, N >= 1; got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("a stroke holds NaN or infinite positions")
    F = int(num_frames)
    if F < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    s0 = int(start_frame)
    if not 0 <= s0 < F:
        raise ValueError(f"start_frame must be in [0, {F - 1}], got {start_frame}")
    out = np.empty((F, 2))
    out[: s0 + 1] = p[0]
    n_run = F - 1 - s0  # frames after the start frame
    if n_run == 0:
        out[-1] = p[-1]
        return out
    # Parameter along the run: 0 at the start frame, 1 at the last frame.
    tau = np.arange(1, n_run + 1, dtype=np.float64) / n_run
    if times is None:
        seg = np.hypot(*np.diff(p, axis=0).T)
        keep = np.concatenate([[True], seg > 0])
        q = p[keep]
        if q.shape[0] < 2:
            out[s0 + 1 :] = p[-1]
            return out
        s = np.concatenate([[0.0], np.cumsum(seg[seg > 0])])
        target = tau * s[-1]
        out[s0 + 1 :, 0] = np.interp(target, s, q[:, 0])
        out[s0 + 1 :, 1] = np.interp(target, s, q[:, 1])
    else:
        t = np.asarray(times, np.float64)
        if t.shape != (p.shape[0],):
            raise ValueError(f"times must have one entry per point ({p.shape[0]}), got shape {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("times hold NaN or infinite values")
        if np.any(np.diff(t) < 0):
            raise ValueError("times must be non-decreasing (seconds since the stroke started)")
        # Merge equal times, keeping the last point of each group so the stroke still ends at p[-1].
        keep = np.concatenate([np.diff(t) > 0, [True]])
        t, q = t[keep], p[keep]
        if t.shape[0] < 2:
            out[s0 + 1 :] = p[-1]
            return out
        target = t[0] + tau * (t[-1] - t[0])
        out[s0 + 1 :] = pchip_interpolate(t, q, target)
    out[-1] = p[-1]
    return out


def build_tracks(
    strokes,
    num_frames: int,
    *,
    start_frames=None,
    times=None,
    radii=None,
    timing: str = "arclength",
    width: int | None = None,
    height: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tracks for a list of drag strokes.

    strokes: list of (N_i, 2) pixel polylines (frame-0 image coordinates). num_frames: F.
    start_frames: None (all 0) or one int per stroke. times: None or a list with, per stroke, (N_i,)
    drawing times in seconds or None. radii: None (DEFAULT_RADIUS), a number, or one radius (pixels,
    > 0) per stroke. timing: "arclength" (constant speed) or "time" (use ``times`` where a stroke has
    them, arc length where it has not). width, height: the image size; when given, a position is
    visible when it lies inside the image (0 <= x < width and 0 <= y < height), else every position is
    visible.

    Returns tracks (P, F, 2) float32, visible (P, F) bool, radius (P,) float32 with P = len(strokes)
    (strokes are never dropped: a single point gives a static track)."""
    if timing not in ("arclength", "time"):
        raise ValueError(f"timing must be 'arclength' or 'time', got {timing!r}")
    strokes = list(strokes)
    P, F = len(strokes), int(num_frames)

    def per_stroke(value, name):
        if value is None:
            return [None] * P
        value = list(value)
        if len(value) != P:
            raise ValueError(f"{name} must have one entry per stroke ({P}), got {len(value)}")
        return value

    starts = per_stroke(start_frames, "start_frames")
    stroke_times = per_stroke(times, "times")
    if radii is None:
        radius = np.full(P, DEFAULT_RADIUS, np.float32)
    elif np.ndim(radii) == 0:
        radius = np.full(P, float(radii), np.float32)
    else:
        radius = np.asarray(per_stroke(radii, "radii"), np.float32).reshape(P)
    if P and (not np.isfinite(radius).all() or (radius <= 0).any()):
        raise ValueError(f"radii must be finite and > 0 pixels, got {radius.tolist()}")
    tracks = np.empty((P, F, 2), np.float32)
    for i, stroke in enumerate(strokes):
        t = stroke_times[i] if timing == "time" else None
        tracks[i] = resample_stroke(stroke, F, start_frame=starts[i] or 0, times=t)
    if width is not None and height is not None:
        x, y = tracks[..., 0], tracks[..., 1]
        visible = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    else:
        visible = np.ones((P, F), bool)
    return tracks, visible, radius


def polygon_mask(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose CENTRE lies inside a closed polygon (even-odd rule).

    poly: (N, 2) pixel vertices (x, y), N >= 3; the last vertex connects back to the first.
    Returns (H, W) bool. Vectorised scanline fill: O(N * H + H * W)."""
    p = np.asarray(poly, np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"poly must have shape (N, 2), got {p.shape}")
    mask = np.zeros((height, width), bool)
    if p.shape[0] < 3:
        return mask
    a, b = p, np.roll(p, -1, axis=0)
    yc = np.arange(height, dtype=np.float64)[:, None] + 0.5  # (H, 1) row centres
    y0, y1 = a[None, :, 1], b[None, :, 1]
    # Half-open rule: an edge counts for a row when the row centre is in [min(y0, y1), max(y0, y1)).
    crosses = (y0 <= yc) != (y1 <= yc)  # (H, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = a[None, :, 0] + (yc - y0) * (b[None, :, 0] - a[None, :, 0]) / (y1 - y0)
    rows, edges = np.nonzero(crosses)
    # The crossing toggles inside-ness for pixel centres i + 0.5 > x, i.e. from column ceil(x - 0.5).
    col = np.clip(np.ceil(xc[rows, edges] - 0.5), 0, width).astype(np.int64)
    toggles = np.zeros((height, width + 1), np.int32)
    np.add.at(toggles, (rows, col), 1)
    mask[:] = (np.cumsum(toggles[:, :width], axis=1) & 1).astype(bool)
    return mask
