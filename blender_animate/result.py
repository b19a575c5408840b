"""The out/ half of the job contract: what a finished run leaves in ``JOB/out/``.

Layout (docs/interfaces.md)::

    out/result.json      written last: schema_version, mode, width, height, num_frames, fps,
                         outputs {video, frames, flow, flow_video[, flow_frames]}, warnings,
                         timings_s, info, generator, finished_at[, encoded_by]
    out/video.mp4        H.264 yuv420p at fps (absent without PyAV)
    out/frames/0000.png  0-based, 8-bit RGB
    out/flow.npz, out/flow.mp4 (or out/flow_frames/ without PyAV)

Output paths in result.json (and the ``done`` event) are relative to the job folder
(``out/video.mp4``). One writer (`write_result`: the generator's runner, and `record_outputs`
for files added later, e.g. an MP4 encoded by Blender), one reader and validator (`read_result`):
it checks every file it names (complete MP4 boxes, complete PNGs of the right size) and never
follows a path out of the job folder.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .job import JOB_JSON, OUT_DIR, atomic_write

SCHEMA_VERSION = 1
PARTIAL_PREFIX = ".out-partial-"  # + pid: the folder a run writes before renaming it to out/
RESULT_JSON = "result.json"
VIDEO = "video.mp4"
FRAMES_DIR = "frames"
FLOW_NPZ = "flow.npz"
FLOW_VIDEO = "flow.mp4"
FLOW_FRAMES_DIR = "flow_frames"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


class ResultError(Exception):
    """The job has no complete output to read; the message says what to do."""


def frame_name(index: int) -> str:
    """0-based, zero-padded to 4 digits: 0000.png, 0001.png ..."""
    return f"{index:04d}.png"


def out_path(name: str) -> str:
    """The path of an out/ file as result.json names it: relative to the job folder."""
    return f"{OUT_DIR}/{name}"


def write_result(folder, data: dict, default=None) -> Path:
    """Write `data` as `folder`/result.json (atomically). `default`: json.dumps' hook for values
    that are not JSON (numpy scalars in a mode's info)."""
    path = Path(folder) / RESULT_JSON
    text = json.dumps(data, indent=2, default=default)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


@dataclass
class ResultFiles:
    """A checked ``out/`` folder. kind: "movie" (video is set) or "sequence" (frames are set);
    result: ``out/result.json`` as read."""

    job_dir: Path
    kind: str
    num_frames: int
    width: int
    height: int
    fps: float
    video: Path | None = None
    frames: list[Path] = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @property
    def first_file(self) -> Path:
        return self.video if self.kind == "movie" else self.frames[0]


def read_result(job_dir) -> ResultFiles:
    """Check a job's ``out/`` folder and every file result.json names; return what it holds.
    Raises ResultError (saying what to do) for a missing, partial or truncated output."""
    job_dir = Path(job_dir).resolve()
    out = job_dir / OUT_DIR
    if not job_dir.is_dir():
        raise ResultError(f"the job folder {job_dir} does not exist")
    if not out.is_dir():
        partial = sorted(p.name for p in job_dir.glob(PARTIAL_PREFIX + "*"))
        why = (
            f"a run is still writing it or was stopped ({partial[0]} is there)"
            if partial
            else "the job has not run yet"
        )
        raise ResultError(
            f"{job_dir} has no out/ folder: {why}. Run Generate (or `python -m backend run {job_dir}`) first"
        )
    result_path = out / RESULT_JSON
    try:
        result = json.loads(result_path.read_text("utf-8"))
    except FileNotFoundError:
        raise ResultError(f"{result_path} is missing: the run did not finish; run Generate again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(f"{result_path} is not readable JSON ({exc}): run Generate again") from exc
    if not isinstance(result, dict):
        raise ResultError(f"{result_path} does not hold a JSON object: run Generate again")

    spec = _read_json(job_dir / JOB_JSON)
    num_frames = _int_field(result, spec, "num_frames", result_path)
    width = _int_field(result, spec, "width", result_path)
    height = _int_field(result, spec, "height", result_path)
    fps = float(result.get("fps") or spec.get("fps") or 0) or 24.0

    outputs = result.get("outputs") if isinstance(result.get("outputs"), dict) else result
    video = _output_path(job_dir, outputs.get("video"))
    frames_dir = _output_path(job_dir, outputs.get("frames")) or out / FRAMES_DIR
    if video is not None:
        check_mp4(video)
        return ResultFiles(job_dir, "movie", num_frames, width, height, fps, video=video, result=result)
    frames = _check_frames(frames_dir, num_frames, width, height)
    return ResultFiles(job_dir, "sequence", num_frames, width, height, fps, frames=frames, result=result)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _int_field(result: dict, spec: dict, name: str, where: Path) -> int:
    value = result.get(name, spec.get(name))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ResultError(f"{where} (and job.json) give no valid {name} ({value!r}): run Generate again")
    return value


def _output_path(job_dir: Path, rel) -> Path | None:
    """Output paths in events and result.json are relative to the job folder (``out/video.mp4``)."""
    if not rel:
        return None
    if not isinstance(rel, str):
        raise ResultError(f"out/result.json names an output as {rel!r}, not a path: run Generate again")
    path = (job_dir / rel).resolve()
    if job_dir not in path.parents:
        raise ResultError(f"out/result.json names {rel!r}, which is outside the job folder {job_dir}")
    return path


def check_mp4(path: Path) -> None:
    """An ISO media file whose top-level boxes fill the file exactly and include ftyp and moov:
    a file cut short (a killed encoder, a copy in progress) fails here."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            boxes, pos = [], 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(16)
                if len(head) < 8:
                    break
                box_size, box_type = struct.unpack(">I4s", head[:8])
                if box_size == 1 and len(head) == 16:
                    box_size = struct.unpack(">Q", head[8:16])[0]
                elif box_size == 0:
                    box_size = size - pos
                if box_size < 8:
                    break
                boxes.append(box_type)
                pos += box_size
    except FileNotFoundError:
        raise ResultError(
            f"the video {path} named in out/result.json is missing: run Generate again"
        ) from None
    except OSError as exc:
        raise ResultError(f"cannot read the video {path}: {exc}") from exc
    if pos != size or not boxes or boxes[0] != b"ftyp" or b"moov" not in boxes:
        raise ResultError(f"the video {path} is incomplete or not an MP4 file: run Generate again")


def _check_frames(frames_dir: Path, num_frames: int, width: int, height: int) -> list[Path]:
    """``0000.png`` ... exactly num_frames complete PNG files of the job's size."""
    if not frames_dir.is_dir():
        raise ResultError(f"{frames_dir} is missing and out/result.json names no video: run Generate again")
    frames = [frames_dir / frame_name(i) for i in range(num_frames)]
    missing = [p.name for p in frames if not p.is_file()]
    if missing:
        raise ResultError(
            f"{frames_dir} lacks {len(missing)} of its {num_frames} frames (first: {missing[0]}): "
            "run Generate again"
        )
    check_frames(frames, width, height)
    return frames


def check_frames(frames: list[Path], width: int, height: int) -> None:
    """Every file is a complete PNG (signature, IHDR, IEND at the end) of width x height."""
    for path in frames:
        try:
            with open(path, "rb") as fh:
                head = fh.read(24)
                fh.seek(0, 2)
                fh.seek(max(0, fh.tell() - len(PNG_IEND)))
                tail = fh.read()
        except OSError as exc:
            raise ResultError(f"cannot read the frame {path}: {exc}") from exc
        if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or tail != PNG_IEND:
            raise ResultError(f"the frame {path} is not a complete PNG file: run Generate again")
        w, h = struct.unpack(">II", head[16:24])
        if (w, h) != (width, height):
            raise ResultError(f"the frame {path} is {w}x{h}, expected {width}x{height}: run Generate again")


def record_outputs(files: ResultFiles, added: dict, **fields) -> None:
    """Add outputs made after the run (e.g. ``{"video": "out/video.mp4"}`` encoded by Blender) and
    `fields` (e.g. ``encoded_by``) to out/result.json, rewritten atomically."""
    result = files.result
    outputs = result.setdefault("outputs", {})
    outputs.update(added)
    result.update(fields)
    write_result(files.job_dir / OUT_DIR, result)
