"""H.264 MP4 files with PyAV: `Mp4Writer` encodes frames as they come, `encode_mp4` a whole
array, `encode_in_parts` one video in runs of frames encoded side by side and joined.

Every file is written under a temporary name (`.NAME.part` beside it) and renamed into place by
close(), so no reader sees it half-written. Frames are (H, W, 3) uint8 RGB or the YUV 4:2:0
planes of backend.outputs.to_yuv420 (made on another thread); H and W must be even.
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, wait
from fractions import Fraction
from pathlib import Path

import numpy as np

# H.264 encoders in order of preference, and the quality settings given to libx264.
H264_CODECS = ("libx264", "h264", "libopenh264")
# ultrafast: at CRF 18 the quality of superfast (PSNR +0.5 dB on the bench's frames) in 0.6x the
# encoding time, for 1.6-1.8x the bytes (720x480: 67 kB a frame); no CABAC and no B-frames also
# make Blender's scrubbing cheaper (benchmarks/bench_preview.py measures both presets).
X264_OPTIONS = {"preset": "ultrafast", "crf": "18"}
# The flow video is a visualisation: speed first.
X264_FAST_OPTIONS = {"preset": "ultrafast", "crf": "23"}
# encode_in_parts: no run shorter than this (each starts with a key frame).
MIN_PART_FRAMES = 8


def fps_fraction(fps: float) -> Fraction:
    """fps as an exact frame rate FFmpeg accepts: 8.0 -> 8, 23.976 -> 24000/1001."""
    return Fraction(float(fps)).limit_denominator(1001)


def h264_codec() -> str:
    """The H.264 encoder of PyAV's FFmpeg to use. Raises ImportError without PyAV and
    RuntimeError when its FFmpeg build has none."""
    import av

    codec = next((c for c in H264_CODECS if c in av.codecs_available), None)
    if codec is None:
        raise RuntimeError("PyAV's FFmpeg has no H.264 encoder (libx264/openh264)")
    return codec


def _add_stream(container, codec: str, width: int, height: int, fps: float, fast: bool, threads: int | None):
    stream = container.add_stream(codec, rate=fps_fraction(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        stream.options = dict(X264_FAST_OPTIONS if fast else X264_OPTIONS)
        if threads is not None:
            stream.options = {**stream.options, "threads": str(max(1, int(threads)))}
    else:  # other H.264 encoders (OpenH264) take a bit rate, not a quality
        stream.bit_rate = int(min(20e6, max(2e6, 2.0 * width * height * float(fps))))
    return stream


def _video_frame(av, frame: np.ndarray):
    fmt = "yuv420p" if frame.ndim == 2 else "rgb24"
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=fmt)


class Mp4Writer:
    """H.264 yuv420p MP4 at `fps` with PyAV, one frame at a time: `write(frame)`, then `close()`
    (flushes and renames the temporary file into place) or `abort()` (removes it). `fast`: x264
    at the flow video's quality. `threads`: x264's threads (None: its own choice, 1.5x the
    cores), so that a run told to use N threads does. Raises as h264_codec."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        *,
        fast: bool = False,
        threads: int | None = None,
    ):
        import av

        self.codec = h264_codec()
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part")
        self._av = av
        self._rate = fps_fraction(fps)
        self._flushed = False
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        try:
            self.stream = _add_stream(self.container, self.codec, width, height, fps, fast, threads)
        except BaseException:
            self.abort()
            raise

    def write(self, frame: np.ndarray) -> None:
        """frame: (H, W, 3) uint8 RGB, or (H * 3 // 2, W) uint8 YUV 4:2:0 from to_yuv420."""
        for packet in self.stream.encode(_video_frame(self._av, frame)):
            self.container.mux(packet)

    def flush(self) -> None:
        """Encode what the encoder still holds (no frame can be written after it; again: a no-op)."""
        if not self._flushed:
            self._flushed = True
            for packet in self.stream.encode(None):
                self.container.mux(packet)

    def append(self, part: _Part, start: int) -> bool:
        """Mux a flushed `part` (encoded with this writer's settings) as frames start.. of this
        video, after what was written; False (nothing muxed) when its parameter sets (SPS, PPS)
        or time base differ from this stream's, or it reorders frames (B-frames: its first
        packet would decode before the previous part's last), so that it cannot be joined."""
        ours, theirs = self.stream.codec_context, part.stream.codec_context
        if theirs.extradata != ours.extradata or theirs.time_base != ours.time_base:
            return False
        if any(p.dts is None or p.dts != p.pts for p in part.packets[:1]):
            return False
        shift = Fraction(start) / (self._rate * ours.time_base)  # frames -> time base
        if shift.denominator != 1:
            return False
        for packet in part.packets:  # each part starts with a key frame: one stream, shifted
            packet.pts += int(shift)
            packet.dts += int(shift)
            packet.stream = self.stream
            self.container.mux(packet)
        return True

    def close(self) -> None:
        try:
            self.flush()
            self.container.close()
            os.replace(self.tmp, self.path)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was written (a no-op after close)."""
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a half-written container may fail; it goes anyway
            pass
        if self.tmp.exists():
            self.tmp.unlink()


class _Part:
    """An encoder like an Mp4Writer's whose packets are kept (in memory) for Mp4Writer.append:
    its container, in memory, is never written."""

    def __init__(self, codec: str, width: int, height: int, fps: float, fast: bool):
        import av

        self._av = av
        self.container = av.open(io.BytesIO(), mode="w", format="mp4")  # the stream's settings
        self.stream = _add_stream(self.container, codec, width, height, fps, fast, 1)
        self.packets: list = []

    def write(self, frame: np.ndarray) -> None:
        self.packets += self.stream.encode(_video_frame(self._av, frame))

    def flush(self) -> None:
        self.packets += self.stream.encode(None)
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - nothing was written to it
            pass


def encode_mp4(path: Path, frames: np.ndarray, fps: float, *, on_frame=None, fast: bool = False) -> str:
    """Encode frames (F, H, W, 3) uint8 RGB as H.264 yuv420p MP4 at `fps` with PyAV (Mp4Writer);
    returns the codec name used. Written under a temporary name, then renamed."""
    n, h, w, _ = frames.shape
    writer = Mp4Writer(path, w, h, fps, fast=fast)
    try:
        for i in range(n):
            writer.write(frames[i])
            if on_frame is not None:
                on_frame(i)
        writer.close()
    finally:
        writer.abort()
    return writer.codec


def part_bounds(count: int, parts: int) -> list[int]:
    """The first frame of each run of encode_in_parts, and `count` last: `parts` runs of about
    equal length, fewer where a run would be shorter than MIN_PART_FRAMES (at least one)."""
    n = max(1, min(int(parts), count // MIN_PART_FRAMES))
    return [round(count * k / n) for k in range(n + 1)]


def encode_in_parts(
    path: Path,
    width: int,
    height: int,
    fps: float,
    count: int,
    frame,
    pool,
    parts: int,
    *,
    fast: bool = False,
    check=None,
    on_frame=None,
) -> str:
    """Encode frames 0..count-1 into one H.264 MP4 at `path`, in `parts` runs of frames side by
    side (part_bounds) on `pool` (a ThreadPoolExecutor with at least that many threads): each run's
    frames are made there in order (`frame(f)` -> (H, W, 3) uint8 RGB or to_yuv420's planes) and
    encoded by an x264 of its own on one thread (the runs are the parallelism: a single x264 on 2
    threads gains ~15 % for 30 % more CPU), then joined in order into one stream. Each run starts
    with a key frame; encoders with the same settings write the same parameter sets (checked: where
    they differ, as with another H.264 encoder, the video is encoded again as one run).

    `check()` runs before each frame on the run's thread and may raise to stop (the first error
    is raised here, the other runs stop at their next frame); `on_frame(n)` runs here, on the
    calling thread, with the number of frames encoded so far, about every 50 ms and at the end.
    Written under a temporary name, then renamed. Returns the codec name used. Raises as
    h264_codec."""
    writer = Mp4Writer(path, width, height, fps, fast=fast, threads=1)
    try:
        bounds = part_bounds(count, parts if writer.codec == "libx264" else 1)
        done = [0] * (len(bounds) - 1)
        runs = [writer] + [_Part(writer.codec, width, height, fps, fast) for _ in range(len(bounds) - 2)]

        failed = threading.Event()  # one run failed: the others stop at their next frame

        def encode(k: int) -> None:
            try:
                for f in range(bounds[k], bounds[k + 1]):
                    if check is not None:
                        check()
                    if failed.is_set():
                        return
                    runs[k].write(frame(f))
                    done[k] += 1
                runs[k].flush()
            except BaseException:
                failed.set()
                raise

        futures = [pool.submit(encode, k) for k in range(len(runs))]
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.05, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    fut.result()  # raises a run's error
                if on_frame is not None:
                    on_frame(sum(done))
        finally:
            failed.set()
            wait(futures)
        if not all(writer.append(part, bounds[k + 1]) for k, part in enumerate(runs[1:])):
            writer.abort()  # cannot be joined: one run, here
            writer = Mp4Writer(path, width, height, fps, fast=fast)
            for f in range(count):
                if check is not None:
                    check()
                writer.write(frame(f))
        writer.close()
    finally:
        writer.abort()
    return writer.codec
