"""Writing a run's outputs into a folder: PNG frames, H.264 video, flow file and flow video.

Everything here writes into the runner's private partial folder (`JOB/.out-partial-<pid>/`);
the runner writes result.json last and renames the folder to `JOB/out`, so no file in `out/` is
ever seen half-written. PNGs need Pillow only; the videos need PyAV (`av`): without it the flow
is written as colour PNG frames too (`flow_frames/`) and the user's tools (Blender's FFmpeg)
encode when asked.

Frame by frame (a streamed run keeps one frame at a time): backend/mp4.py encodes frames as they
come, backend/flow_file.py writes flow.npz frame by frame and reads it back, and `flow_lut` +
`color_flow` colour a frame with the one normalisation of the whole video.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from blender_animate.result import frame_name

from .parallel import map_ordered

# Fast zlib level: 2-3x quicker than the default for ~10 % larger files.
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = 3  # Z_RLE: a little faster and smaller than the default on rendered frames
# PNG frames beside video.mp4 only when asked (the Blender import uses the mp4): set to 1.
PNG_ENV = "ANIMATE_ANYTHING_PNG"


def png_frames_wanted(have_video: bool) -> bool:
    """Whether out/frames/ is written: always without a video, else only when PNG_ENV is 1."""
    return not have_video or os.environ.get(PNG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def write_png_sequence(
    folder: Path, frames: np.ndarray, *, workers: int = 1, on_frame=None, check_stop=None
) -> Path:
    """Write frames (F, H, W, 3) uint8 RGB as folder/0000.png ... with Pillow, on `workers`
    threads (zlib releases the GIL). `on_frame(i)` runs after each frame is written;
    `check_stop()` runs before each and may raise to stop early."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        save_png(folder / frame_name(i), frames[i])

    for i, _ in enumerate(map_ordered(write, len(frames), workers, check_stop)):
        if on_frame is not None:
            on_frame(i)
    return folder


def save_png(path: Path, frame: np.ndarray) -> None:
    """One (H, W, 3) uint8 RGB frame as an 8-bit RGB PNG (fast zlib level)."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(frame, np.uint8)).save(
        path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_ZLIB_STRATEGY
    )


# flow.mp4 colours come from a lookup table of LUT_RADIUS steps per half-axis (1/256 of the largest
# magnitude: invisible), built with the core's flow_to_color: ~3x cheaper than colouring every pixel.
LUT_RADIUS = 256


def flow_lut(max_magnitude: float) -> tuple[np.ndarray, np.float32]:
    """The colour lookup table for flow up to `max_magnitude` pixels: (lut (n*n,) uint32 packed
    RGBA, scale) for color_flow (n = 2 * LUT_RADIUS + 1), from the core's flow_to_color. The
    table is in units of the largest magnitude (the wheel's colour depends on flow / maximum
    alone), so one is built per process and only `scale` depends on `max_magnitude`."""
    m = float(max_magnitude)
    if m == 0.0:  # no motion: one colour
        return _unit_lut(still=True), np.float32(0.0)
    return _unit_lut(still=False), np.float32(LUT_RADIUS / m)


@functools.cache
def _unit_lut(still: bool) -> np.ndarray:
    """flow_lut's table for a largest magnitude of 1 (read-only, shared by the threads); `still`:
    every entry the colour of no motion."""
    from blender_animate.flowviz import flow_to_color

    R = LUT_RADIUS
    n = 2 * R + 1
    lut = np.zeros((n * n, 4), np.uint8)
    if still:
        lut[:, :3] = flow_to_color(np.zeros((1, 1, 2), np.float32))[0, 0]
    else:
        axis = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)  # [iv, iu] -> (u, v)
        # A grid point can lie up to one step beyond the largest magnitude: keep it unsaturated.
        lut[:, :3] = flow_to_color(grid, max_magnitude=1 + 1.5 / R).reshape(-1, 3)
    table = lut.view(np.uint32).reshape(-1)
    table.flags.writeable = False
    return table


def color_flow(
    flow: np.ndarray, lut: tuple[np.ndarray, np.float32], out: np.ndarray | None = None
) -> np.ndarray:
    """One frame's flow (H, W, 2) float32 or float16 (as flow.npz stores it) -> (H, W, 3) uint8
    with a flow_lut table (quantised to 1/LUT_RADIUS of its magnitude); non-finite flow is black,
    as in flow_to_color. Compiled by numba where it is installed (backend/output_kernel.py, the
    same bits; float16 read in place), else numpy."""
    lut32, scale = lut
    R, n = LUT_RADIUS, 2 * LUT_RADIUS + 1
    if out is None:
        out = np.empty(flow.shape[:2] + (3,), np.uint8)
    kernel = _output_kernel()
    if kernel is not None and out.flags.c_contiguous and flow.dtype in (np.float32, np.float16):
        flow, rgba = np.ascontiguousarray(flow), lut32.view(np.uint8).reshape(-1, 4)
        if flow.dtype == np.float32:
            kernel.color_flow(flow, rgba, scale, R, out)
        else:
            kernel.color_flow_half(flow.view(np.uint16), _half_table(), rgba, scale, R, out)
        return out
    q = np.multiply(flow, scale, dtype=np.float32)  # (H, W, 2); float16 is cast exactly
    bad = None
    if not np.isfinite(q.sum()):  # rare: find the non-finite pixels
        bad = ~np.isfinite(q).all(axis=-1)
        q[bad] = 0.0
    np.rint(q, out=q)
    np.clip(q, -R, R, out=q)
    qi = q.astype(np.int32)
    idx = (qi[..., 1] + R) * n + (qi[..., 0] + R)
    out[...] = np.take(lut32, idx).view(np.uint8).reshape(idx.shape + (4,))[..., :3]
    if bad is not None:
        out[bad] = 0
    return out


@functools.cache
def _half_table() -> np.ndarray:
    """(65536,) float32: every float16 value, indexed by its bits (256 KiB)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


def _output_kernel():
    """backend.output_kernel through backend.compiled.load, or None (numpy and swscale)."""
    from .compiled import load

    return load("backend.output_kernel", _smoke_test)


def _smoke_test(kernel) -> None:
    flow, out = np.zeros((2, 2, 2), np.float32), np.empty((2, 2, 3), np.uint8)
    lut = np.zeros((9, 4), np.uint8)
    kernel.color_flow(flow, lut, np.float32(1.0), 1, out)
    half = flow.astype(np.float16).view(np.uint16)
    kernel.color_flow_half(half, _half_table(), lut, np.float32(1.0), 1, out)
    kernel.flow_square_max(flow)
    kernel.rgb_to_yuv420(out, np.empty((3, 2), np.uint8))


def flow_square_max(flow: np.ndarray) -> tuple[float, bool]:
    """One frame's flow (H, W, 2) -> (the largest finite squared magnitude, whether every value
    is finite): one pass in the numba kernel where it loads (~8x numpy's einsum)."""
    kernel = _output_kernel()
    if kernel is not None and flow.dtype == np.float32:
        top, finite = kernel.flow_square_max(np.ascontiguousarray(flow))
        return float(top), bool(finite)
    sq = np.einsum("hwc,hwc->hw", flow, flow)
    top = float(sq.max(initial=0.0))
    if np.isfinite(top):
        return top, True
    finite = sq[np.isfinite(sq)]
    return (float(finite.max()) if finite.size else 0.0), False


def to_yuv420(frame: np.ndarray) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB (H, W even) -> (H * 3 // 2, W) uint8 YUV 4:2:0 planes (Y, then U and
    V at half size), BT.601 limited range with each 2x2 block's mean chroma: what swscale makes
    of it for x264 (Y within 1, chroma within a few levels), in one nogil pass of the numba
    kernel (~6x swscale: 1 ms a 1080p frame), so that the frame threads convert and the encoding thread only
    encodes. None without the kernel (Mp4Writer then converts with swscale)."""
    kernel = _output_kernel()
    H, W = frame.shape[:2]
    if kernel is None or frame.dtype != np.uint8 or frame.shape != (H, W, 3) or H % 2 or W % 2:
        return None
    out = np.empty((H * 3 // 2, W), np.uint8)
    kernel.rgb_to_yuv420(np.ascontiguousarray(frame), out)
    return out


def as_encoded(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> to_yuv420's planes where the kernel makes them, else the frame
    itself (Mp4Writer takes either)."""
    yuv = to_yuv420(frame)
    return frame if yuv is None else yuv


def flow_colors(flow: np.ndarray, on_frame=None) -> np.ndarray:
    """(F, H, W, 2) float32 -> (F, H, W, 3) uint8 Middlebury colours (blender_animate.flowviz),
    one normalisation for all frames: the largest finite magnitude, as flow_to_color does.
    Quantised to 1/LUT_RADIUS of that magnitude; non-finite flow is black, as in flow_to_color."""
    m2 = max((flow_square_max(f)[0] for f in flow), default=0.0)  # frame by frame
    lut = flow_lut(float(np.sqrt(m2)))
    out = np.empty(flow.shape[:-1] + (3,), np.uint8)
    for f in range(len(flow)):
        color_flow(flow[f], lut, out=out[f])
        if on_frame is not None:
            on_frame(f)
    return out
