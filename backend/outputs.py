"""Writing a finished run into a folder: PNG frames, H.264 video, flow file and flow video.

Everything here writes into the runner's private partial folder (`JOB/.out-partial-<pid>/`);
the runner writes result.json last and renames the folder to `JOB/out`, so no file in `out/` is
ever seen half-written. PNGs need Pillow only; the videos need PyAV (`av`): without it the flow
is written as colour PNG frames too (`flow_frames/`) and the user's tools (Blender's FFmpeg)
encode when asked.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from blender_animate.result import frame_name

from .parallel import map_ordered

# Fast zlib level: 2-3x quicker than the default for ~10 % larger files.
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = 3  # Z_RLE: a little faster and smaller than the default on rendered frames
# H.264 encoders in order of preference, and the quality settings given to libx264.
H264_CODECS = ("libx264", "h264", "libopenh264")
X264_OPTIONS = {"preset": "superfast", "crf": "18"}
# The flow video is a visualisation: speed first.
X264_FAST_OPTIONS = {"preset": "ultrafast", "crf": "23"}


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


def fps_fraction(fps: float) -> Fraction:
    """fps as an exact frame rate FFmpeg accepts: 8.0 -> 8, 23.976 -> 24000/1001."""
    return Fraction(float(fps)).limit_denominator(1001)


def encode_mp4(path: Path, frames: np.ndarray, fps: float, *, on_frame=None, fast: bool = False) -> str:
    """Encode frames (F, H, W, 3) uint8 RGB as H.264 yuv420p MP4 at `fps` with PyAV; returns the
    codec name used. `fast`: x264 ultrafast (for visualisations). Raises ImportError without
    PyAV and RuntimeError when no H.264 encoder exists in its FFmpeg build. H and W must be even
    (job sizes are multiples of 8). Written under a temporary name, then renamed."""
    import av

    available = av.codecs_available
    codec = next((c for c in H264_CODECS if c in available), None)
    if codec is None:
        raise RuntimeError("PyAV's FFmpeg has no H.264 encoder (libx264/openh264)")
    n, h, w, _ = frames.shape
    tmp = path.with_name(f".{path.name}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=fps_fraction(fps))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            if codec == "libx264":
                stream.options = dict(X264_FAST_OPTIONS if fast else X264_OPTIONS)
            else:  # other H.264 encoders (OpenH264) take a bit rate, not a quality
                stream.bit_rate = int(min(20e6, max(2e6, 2.0 * w * h * float(fps))))
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                if on_frame is not None:
                    on_frame(i)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return codec


# Flow of points far outside the image is meaningless for a viewer and float16 stops at 65504.
FLOW_SAVE_LIMIT = 60000.0


def write_flow_npz(path: Path, flow: np.ndarray) -> None:
    """flow (F, H, W, 2) float32 pixels -> the core's flow file (blender_animate.flowviz.save_flow,
    float16), values clipped to +-FLOW_SAVE_LIMIT pixels (points far off-screen)."""
    from blender_animate.flowviz import save_flow

    try:
        save_flow(path, flow)
    except ValueError:  # beyond float16 (the check is save_flow's): clip the far-off points
        save_flow(path, np.clip(flow, -FLOW_SAVE_LIMIT, FLOW_SAVE_LIMIT))


# flow.mp4 colours come from a lookup table of LUT_RADIUS steps per half-axis (1/256 of the largest
# magnitude: invisible), built with the core's flow_to_color: ~3x cheaper than colouring every pixel.
LUT_RADIUS = 256


def flow_colors(flow: np.ndarray, on_frame=None) -> np.ndarray:
    """(F, H, W, 2) float32 -> (F, H, W, 3) uint8 Middlebury colours (blender_animate.flowviz),
    one normalisation for all frames: the largest finite magnitude, as flow_to_color does.
    Quantised to 1/LUT_RADIUS of that magnitude; non-finite flow is black, as in flow_to_color."""
    from blender_animate.flowviz import flow_to_color

    m2 = 0.0  # the largest finite squared magnitude, frame by frame (small temporaries)
    for f in range(len(flow)):
        sq = np.einsum("hwc,hwc->hw", flow[f], flow[f])
        top = float(sq.max(initial=0.0))
        if not np.isfinite(top):
            finite = sq[np.isfinite(sq)]
            top = float(finite.max()) if finite.size else 0.0
        m2 = max(m2, top)
    m = float(np.sqrt(m2))
    out = np.empty(flow.shape[:-1] + (3,), np.uint8)
    if m == 0.0:
        out[...] = flow_to_color(np.zeros((1, 1, 2), np.float32))[0, 0]  # no motion: one colour
        return out
    R = LUT_RADIUS
    n = 2 * R + 1
    axis = np.linspace(-m, m, n, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)  # [iv, iu] -> (u, v)
    # A grid point can lie up to one step beyond the largest magnitude: keep it unsaturated.
    lut = np.zeros((n * n, 4), np.uint8)
    lut[:, :3] = flow_to_color(grid, max_magnitude=m * (1 + 1.5 / R)).reshape(-1, 3)
    lut32 = lut.view(np.uint32).reshape(-1)  # one gather per pixel instead of three
    scale = np.float32(R / m)
    for f in range(len(flow)):
        q = flow[f] * scale  # (H, W, 2), contiguous
        bad = None
        if not np.isfinite(q.sum()):  # rare: find the non-finite pixels
            bad = ~np.isfinite(q).all(axis=-1)
            q[bad] = 0.0
        np.rint(q, out=q)
        np.clip(q, -R, R, out=q)
        qi = q.astype(np.int32)
        idx = (qi[..., 1] + R) * n + (qi[..., 0] + R)
        out[f] = np.take(lut32, idx).view(np.uint8).reshape(idx.shape + (4,))[..., :3]
        if bad is not None:
            out[f][bad] = 0
        if on_frame is not None:
            on_frame(f)
    return out
