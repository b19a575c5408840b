"""flow.npz frame by frame: `FlowFileWriter` writes it (the same file blender_animate.flowviz's
`save_flow` writes: an uncompressed .npz whose float16 array is streamed into the zip member) and
takes the flow's range as it goes; `read_flow_frames` reads it back one frame at a time, in order,
and `FlowFrames` any frame, from several threads. The float16 casts are OpenCV's where it imports
(numpy's bits)."""

from __future__ import annotations

import io
import mmap
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .outputs import flow_square_max


def _cv2():
    """OpenCV, or None (the casts below fall back to numpy)."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def to_float16(a: np.ndarray, out: np.ndarray) -> None:
    """out[...] = a (float32 -> float16, round to nearest even; out: float16, a's shape, C order),
    with OpenCV's SIMD conversion where it imports (~30x numpy's cast, the same bits)."""
    cv2 = _cv2()
    if cv2 is None or a.ndim < 2 or a.dtype != np.float32 or not out.flags.c_contiguous:
        out[...] = a
        return
    cv2.convertFp16(
        np.ascontiguousarray(a).reshape(a.shape[0], -1), dst=out.view(np.int16).reshape(a.shape[0], -1)
    )


def from_float16(h: np.ndarray) -> np.ndarray:
    """h (float16, C order) as a new float32 array (exact), by OpenCV where it imports."""
    cv2 = _cv2()
    if cv2 is None or h.ndim < 2:
        return h.astype(np.float32)
    flat = np.ascontiguousarray(h).view(np.int16).reshape(h.shape[0], -1)
    return cv2.convertFp16(flat).reshape(h.shape)


# Flow of points far outside the image is meaningless for a viewer and float16 stops at 65504.
FLOW_SAVE_LIMIT = 60000.0


def write_flow_npz(path: Path, flow: np.ndarray) -> None:
    """flow (F, H, W, 2) float32 pixels -> the core's flow file (as blender_animate.flowviz.save_flow
    writes it, float16), values clipped to +-FLOW_SAVE_LIMIT pixels (points far off-screen)."""
    writer = FlowFileWriter(path, *flow.shape[:3])
    try:
        for f in range(len(flow)):
            writer.write(flow[f])
        writer.close()
    finally:
        writer.abort()


class EncodedFlow(NamedTuple):
    """A flow frame ready for FlowFileWriter.write: half (H, W, 2) float16, clipped to
    +-FLOW_SAVE_LIMIT; square_max: the largest finite squared magnitude before the clip."""

    half: np.ndarray
    square_max: float


class FlowFileWriter:
    """flow.npz written one (H, W, 2) float32 frame at a time, num_frames of them: the layout of
    np.savez (an uncompressed zip: "flow.npy" float16 (F, H, W, 2), "format_version.npy"), read
    by blender_animate.flowviz.load_flow. Values are clipped to +-FLOW_SAVE_LIMIT (float16 stops
    at 65504). `max_magnitude` is the largest finite flow magnitude so far (float32 flow, before
    the clip: flow.mp4's normalisation). close() renames the temporary file into place."""

    def __init__(self, path: Path, num_frames: int, height: int, width: int):
        from blender_animate.flowviz import FLOW_KEY

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.part")
        self.shape = (int(num_frames), int(height), int(width), 2)
        self.written = 0
        self._m2 = 0.0
        self._zip = zipfile.ZipFile(self.tmp, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._member = self._zip.open(f"{FLOW_KEY}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self._member, {**header, "shape": self.shape})
        self._buf = np.empty(self.shape[1:], np.float16)

    @property
    def max_magnitude(self) -> float:
        return float(np.sqrt(self._m2))

    @staticmethod
    def encode(flow: np.ndarray, out: np.ndarray | None = None) -> EncodedFlow:
        """One frame's flow (H, W, 2) as write() stores it: thread-safe, so that the frame threads
        do it and the writing thread only writes."""
        if out is None:
            out = np.empty(flow.shape, np.float16)
        top, finite = flow_square_max(flow)
        if finite and top <= FLOW_SAVE_LIMIT**2:  # then the clip changes nothing
            to_float16(np.asarray(flow, np.float32), out)
        else:
            np.clip(flow, -FLOW_SAVE_LIMIT, FLOW_SAVE_LIMIT, out=out, casting="same_kind")
        return EncodedFlow(out, top)

    def write(self, flow: np.ndarray | EncodedFlow) -> None:
        """Append a frame: (H, W, 2) float32 flow, or encode()'s result for it."""
        shape = flow.half.shape if isinstance(flow, EncodedFlow) else flow.shape
        if self.written >= self.shape[0] or shape != self.shape[1:]:
            raise ValueError(f"flow frame {self.written}: {shape}, expected {self.shape[1:]}")
        if not isinstance(flow, EncodedFlow):
            flow = self.encode(flow, self._buf)
        self._m2 = max(self._m2, flow.square_max)
        self._member.write(np.ascontiguousarray(flow.half).data)
        self.written += 1

    def close(self) -> None:
        if self.written != self.shape[0]:
            raise ValueError(f"{self.written} of {self.shape[0]} flow frames were written")
        self._member.close()
        version = np.array(1, np.int32)
        with self._zip.open("format_version.npy", "w") as fh:
            np.lib.format.write_array(fh, version, allow_pickle=False)
        self._zip.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop what was written (a no-op after close). Each close is tried on its own and the file
        is closed in the end whatever they raise: on a full disk the member's close fails, and a
        file left open would fail again, noisily, when it is collected."""
        for close in (self._member.close, self._zip.close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the file goes anyway
                pass
        fp, self._zip.fp = self._zip.fp, None
        if fp is not None:
            try:
                fp.close()
            except OSError:
                pass
        if self.tmp.exists():
            self.tmp.unlink()


def read_flow_frames(path: Path):
    """Yield the frames of a flow file written by FlowFileWriter or save_flow (uncompressed), one
    (H, W, 2) float32 array at a time (exact), without reading the whole array into memory."""
    from blender_animate.flowviz import FLOW_KEY

    with zipfile.ZipFile(path) as zf, zf.open(f"{FLOW_KEY}.npy") as fh:
        shape, dtype = _flow_header(fh, path)
        count = int(np.prod(shape[1:]))
        for _ in range(shape[0]):
            frame = np.frombuffer(fh.read(count * dtype.itemsize), dtype).reshape(shape[1:])
            yield from_float16(frame) if frame.dtype == np.float16 else frame.astype(np.float32)


def _flow_header(fh, path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) from the .npy header at fh's position (fh is then at the data); ValueError
    unless it is a (F, H, W, 2) C-order array."""
    fmt = np.lib.format
    major, _ = fmt.read_magic(fh)
    shape, fortran, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(fh)
    if fortran or len(shape) != 4:
        raise ValueError(f"{path}: not a (F, H, W, 2) C-order flow array")
    return shape, dtype


class FlowFrames:
    """Random access to the frames of an uncompressed flow file (FlowFileWriter's, save_flow's)
    through a read-only memory map: `read(f)` is a view, no copy, so several threads read frames
    side by side (each faulting in its own pages); `release(f)` when done with it. The zip
    member's CRC is not checked (read_flow_frames checks it). A compressed member raises
    ValueError."""

    def __init__(self, path: Path):
        from blender_animate.flowviz import FLOW_KEY

        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{FLOW_KEY}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{path}: the flow is compressed; read it with read_flow_frames")
        with open(path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            # The member's local header (the zip format: 30 bytes, then the name and the extra
            # field, whose lengths are its last two fields), then the .npy header, then the frames.
            at = info.header_offset
            if self._map[at : at + 4] != b"PK\x03\x04":
                raise ValueError(f"{path}: no zip member at byte {at}")
            name_len, extra_len = np.frombuffer(self._map[at + 26 : at + 30], "<u2")
            member = at + 30 + int(name_len) + int(extra_len)
            npy = io.BytesIO(self._map[member : member + 65536])  # .npy headers are far shorter
            shape, self.dtype = _flow_header(npy, path)
            self.shape = tuple(int(v) for v in shape)
            self._count = int(np.prod(self.shape[1:]))
            self._start = member + npy.tell()
            if self._start + self.shape[0] * self._count * self.dtype.itemsize > len(self._map):
                raise ValueError(f"{path}: the file ends before its last flow frame")
        except BaseException:
            self._map.close()
            raise

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, f: int) -> np.ndarray:
        """Frame f (H, W, 2) in the file's dtype (float16 from FlowFileWriter): a read-only view
        of the file, valid until close()."""
        if not 0 <= f < self.shape[0]:
            raise IndexError(f"flow frame {f} of {self.shape[0]}")
        offset = self._start + f * self._count * self.dtype.itemsize
        return np.frombuffer(self._map, self.dtype, self._count, offset).reshape(self.shape[1:])

    def release(self, f: int) -> None:
        """Drop frame f's pages from this process (they stay in the page cache): otherwise every
        frame read stays resident until close(), and a 1080p x 97 flow file adds 0.8 GB to the
        peak RSS. A page shared with a neighbour frame is only unmapped: read again, it comes back."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        size = self._count * self.dtype.itemsize
        start = (self._start + f * size) // mmap.PAGESIZE * mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, self._start + (f + 1) * size - start)

    def close(self) -> None:
        """Unmap the file; a view still alive keeps the map until it goes (then it is unmapped)."""
        try:
            self._map.close()
        except BufferError:
            pass

    def __enter__(self) -> FlowFrames:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
