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

from .parallel import map_ordered

FRAMES_DIR = "frames"
FLOW_FRAMES_DIR = "flow_frames"
VIDEO = "video.mp4"
FLOW_NPZ = "flow.npz"
FLOW_VIDEO = "flow.mp4"
RESULT_JSON = "result.json"
# Fast zlib level: 2-3x quicker than the default for ~10 % larger files.
PNG_COMPRESS_LEVEL = 1
# H.264 encoders in order of preference, and the quality settings given to libx264.
H264_CODECS = ("libx264", "h264", "libopenh264")
X264_OPTIONS = {"preset": "veryfast", "crf": "18"}
# The flow video is a visualisation: speed first.
X264_FAST_OPTIONS = {"preset": "ultrafast", "crf": "23"}


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def frame_name(index: int) -> str:
    """0-based, zero-padded to 4 digits: 0000.png, 0001.png ..."""
    return f"{index:04d}.png"


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
        path, format="PNG", compress_level=PNG_COMPRESS_LEVEL
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

    if np.abs(flow).max(initial=0.0) > FLOW_SAVE_LIMIT:
        flow = np.clip(flow, -FLOW_SAVE_LIMIT, FLOW_SAVE_LIMIT)
    save_flow(path, flow)


def flow_colors(flow: np.ndarray, on_frame=None) -> np.ndarray:
    """(F, H, W, 2) float32 -> (F, H, W, 3) uint8 Middlebury colours (blender_animate.flowviz),
    one normalisation for all frames: the largest finite magnitude, as flow_to_color does."""
    from blender_animate.flowviz import flow_to_color

    m = 0.0
    for f in range(len(flow)):
        mag = np.hypot(flow[f, ..., 0], flow[f, ..., 1])
        finite = mag[np.isfinite(mag)]
        if finite.size:
            m = max(m, float(finite.max()))
    out = np.empty(flow.shape[:-1] + (3,), np.uint8)
    for f in range(len(flow)):
        out[f] = flow_to_color(flow[f], max_magnitude=m)
        if on_frame is not None:
            on_frame(f)
    return out
