"""The job directory: the one contract between Blender and the generator process.

Layout (DESIGN.md)::

    JOB/job.json           JobSpec as JSON (schema_version, mode, sizes, sampling, model options)
    JOB/reference.png      the first frame, width x height, RGB 8-bit
    JOB/depth.npy          optional planar depth (H, W) float32, scene units, aligned with reference.png
    JOB/conditions.npz     c2w (F,4,4) float64 OpenCV camera-to-world, K (F,3,3) float64 pixels,
                           tracks (P,F,2) float32 pixels, track_visible (P,F) bool,
                           track_radius (P,) float32 pixels, region_masks (R,H,W) bool,
                           object_ids (H,W) int32 (optional: the object-identity pass, 0 = none)
    JOB/clean_plate.png    optional (clean_plate: true): frame 0 with the dragged objects hidden,
    JOB/clean_plate_depth.npy  and its planar depth, aligned with reference.png
    JOB/reference_video.*  optional motion reference (any container FFmpeg reads)
    JOB/cancel             created by whoever wants the run to stop
    JOB/.run-lock          held (flock) by the run in progress; one run per job folder
    JOB/out/               written by the generator

Everything here is stdlib + numpy so that Blender, the generator and a render farm share one
validator. Validation raises JobError with a message that says what to change.

job.json's schema is the JobSpec dataclass below: one line per field, its JSON type from the
annotation and its rules (required, choices, range, multiple) from `_field(...)`. Every field is
type-checked by name before its range, and a missing required field is named. Adding a field is
one line there.

conditions.npz is `Conditions` (conditions.py); the input files are read by job_files.py (plain
files only, bounded, no pickles); job.json is read up to MAX_JOB_JSON_BYTES.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Re-exported (`x as x`): the atomic writer, conditions.npz and the job's error are this module's API too.
from .atomic import atomic_write as atomic_write
from .conditions import MAX_REGIONS as MAX_REGIONS
from .conditions import MAX_TRACKS as MAX_TRACKS
from .conditions import Conditions as Conditions
from .job_files import JobError as JobError
from .job_files import check_input, open_input, read_npy

SCHEMA_VERSION = 1
MODES = ("preview", "guided", "animateanything")
DEVICES = ("auto", "cuda", "cpu", "mps")
DTYPES = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("auto", "none", "model", "sequential", "group")
REFERENCE_SOURCES = ("file", "render")

JOB_JSON = "job.json"
REFERENCE_PNG = "reference.png"
DEPTH_NPY = "depth.npy"
CONDITIONS_NPZ = "conditions.npz"
CLEAN_PLATE_PNG = "clean_plate.png"
CLEAN_PLATE_DEPTH_NPY = "clean_plate_depth.npy"
DRAG_REGIONS = ("auto", "discs")
CANCEL_FILE = "cancel"
LOCK_FILE = ".run-lock"
OUT_DIR = "out"

MAX_JOB_JSON_BYTES = 1 << 20  # job.json is a few kB; a bigger one is not ours (or /dev/zero)


# ----------------------------------------------------------------------------------------------
# job.json: the schema


@dataclass(frozen=True)
class FieldRule:
    """What a job.json field may hold besides its type. `min`/`max` are inclusive (`min_exclusive`:
    strictly above `min`); `choices` lists the allowed values; `file_name`: a plain file name inside
    the job folder (or "")."""

    required: bool = False
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    multiple_of: int | None = None
    unit: str = ""
    file_name: bool = False

    def words(self) -> str:
        """The rule in words, e.g. 'a multiple of 8 between 16 and 4096 pixels'."""
        parts = []
        if self.multiple_of:
            parts.append(f"a multiple of {self.multiple_of}")
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            parts.append(
                f"more than {lo} and at most {hi}" if self.min_exclusive else f"between {lo} and {hi}"
            )
        elif lo is not None:
            parts.append(f"more than {lo}" if self.min_exclusive else f"at least {lo}")
        elif hi is not None:
            parts.append(f"at most {hi}")
        if self.unit:
            parts.append(self.unit)
        return " ".join(parts)


def _field(default, **rule):
    """A JobSpec field: its default and its FieldRule (see there)."""
    meta = {"rule": FieldRule(**rule)}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


# JSON type of each annotation, and how a message names it.
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "dict": "an object",
}


@dataclass
class JobSpec:
    """Settings of one generation job (job.json). Sizes in pixels, fps in frames per second.
    One line per field: `name: json type = _field(default, rules)`."""

    schema_version: int = _field(SCHEMA_VERSION, required=True)
    mode: str = _field("preview", required=True, choices=MODES)
    width: int = _field(720, required=True, min=16, max=4096, multiple_of=8, unit="pixels")
    height: int = _field(480, required=True, min=16, max=4096, multiple_of=8, unit="pixels")
    num_frames: int = _field(49, required=True, min=2, max=1024)
    fps: float = _field(8.0, min=0, max=240, min_exclusive=True, unit="frames per second")
    prompt: str = _field("")
    negative_prompt: str = _field("")
    seed: int = _field(0, min=0, max=2**63 - 1)
    steps: int = _field(50, min=1, max=1000)
    guidance_scale: float = _field(6.0, min=0, max=50)
    # guided mode: 1.0 = plain image-to-video, lower = closer to the preview's motion (SDEdit).
    strength: float = _field(0.8, min=0, max=1)
    noise_warp: bool = _field(False)
    # guided mode (docs/guided.md): the model family of `model`, how the preview steers it
    # ("ttm" Time-to-Move, "sdedit" by `strength`, "none", "tracks" Wan-Move), Time-to-Move's step
    # indices (-1 = the family's default), fresh noise mixed into the warped noise, an optional
    # diffusers LoRA (.safetensors) at a scale, and a Wan transformer file (original format).
    model_family: str = _field("cogvideox", choices=("cogvideox", "wan"))
    guidance: str = _field("ttm", choices=("ttm", "sdedit", "none", "tracks"))
    tweak_index: int = _field(-1, min=-1, max=1000)
    tstrong_index: int = _field(-1, min=-1, max=1000)
    noise_degradation: float = _field(0.0, min=0, max=1)
    lora: str = _field("")
    lora_scale: float = _field(1.0, min=-10, max=10)
    transformer_file: str = _field("")
    # A local folder or a hub id; downloads only when allow_download is true.
    model: str = _field("")
    animateanything_model: str = _field("")
    allow_download: bool = _field(False)
    device: str = _field("auto", choices=DEVICES)
    dtype: str = _field("auto", choices=DTYPES)
    offload: str = _field("auto", choices=OFFLOADS)
    vae_tiling: str = _field("auto", choices=("auto", "on", "off"))
    # Where the reference image came from ("file" or "render") and the original path if a file.
    reference_source: str = _field("file", choices=REFERENCE_SOURCES)
    reference_path: str = _field("")
    # Planar depth used when depth.npy is absent: a fronto-parallel plane at this distance
    # (scene units); 0 means "unknown" and the generator picks its documented default.
    fallback_depth: float = _field(0.0, min=0, unit="scene units")
    reference_video: str = _field("", file_name=True)  # a file name inside the job directory, or ""
    # What a drag moves (blender_animate/flow.py, drag_weights): "auto" = the object it starts on
    # (conditions.npz object_ids; for a picked image, the region segmented from the image), else a
    # soft disc of track_radius; "discs" = always the disc. An object covering more than
    # object_max_share of the frame (a ground plane, a wall) counts as background: a disc moves.
    drag_regions: str = _field("auto", choices=DRAG_REGIONS)
    object_max_share: float = _field(0.35, min=0, max=1, min_exclusive=True)
    # conditions.npz object_ids -> the objects: {"<id>": {"name": str, "in_clean_plate": bool}}
    # (in_clean_plate false: hidden from clean_plate.png, whose pixels show what it covers).
    objects: dict = _field({})
    clean_plate: bool = _field(False)  # clean_plate.png + clean_plate_depth.npy are in the job
    # Optional models for a picked image (no scene): SAM 2 for the region under a drag, Depth
    # Anything V2 for its depth (folders in the transformers layout, or hub ids with allow_download).
    segment_model: str = _field("")
    depth_model: str = _field("")
    # Free-form provenance (Blender version, scene, frame range); never interpreted.
    info: dict = _field({})

    def validate(self) -> JobSpec:
        """Check every field (its type, then its range); raise JobError naming the field and what to
        change. Numbers are normalised (an integer fps becomes a float)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check_field(f, getattr(self, f.name)))
        if self.mode in ("guided", "animateanything") and self.num_frames % 4 != 1:
            raise JobError(
                f"mode {self.mode!r} needs 4k+1 frames (CogVideoX latents), got {self.num_frames}: "
                "use 49 for CogVideoX 1.0 or 81 for 1.5"
            )
        for key, entry in self.objects.items():
            if not (key.isdigit() and 0 < int(key) < 2**31):
                raise JobError(f"objects: the key {key!r} is not an object id (a positive integer)")
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("in_clean_plate", True), bool)
                and set(entry) <= {"name", "in_clean_plate"}
            ):
                raise JobError(
                    f'objects["{key}"] must be {{"name": text, "in_clean_plate": true/false}}, '
                    f"got {_shown(entry)}"
                )
        return self

    def object_name(self, object_id: int) -> str:
        """The name of object `object_id` of conditions.npz object_ids ("object N" when unnamed)."""
        entry = self.objects.get(str(int(object_id)))
        return entry["name"] if entry else f"object {int(object_id)}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        """The JobSpec of job.json's object: the schema version first, then unknown fields, the types
        of the fields present, missing required fields, then ranges (validate)."""
        if not isinstance(data, dict):
            raise JobError(f"job.json must hold a JSON object ({{...}}), not {_json_type(data)}")
        if "schema_version" not in data:
            raise JobError("job.json has no schema_version: it was not written by this extension")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        _in_job_json(_check_field, fields["schema_version"], data["schema_version"])
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise JobError(f"job.json has unknown fields {unknown}: was it written by a newer extension?")
        for name, value in data.items():
            _in_job_json(_check_type, fields[name], value)
        missing = [n for n, f in fields.items() if f.metadata["rule"].required and n not in data]
        if missing:
            raise JobError(
                f"job.json lacks the required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
                "export the job again"
            )
        return _in_job_json(cls(**data).validate)


def _in_job_json(check, *args):
    """check(*args), its JobError saying that the field is job.json's."""
    try:
        return check(*args)
    except JobError as exc:
        raise JobError(f"job.json: {exc}") from None


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value) -> str:
    """The value as job.json spells it, cut to a readable length."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_type(f: dataclasses.Field, value):
    """`value` as field `f`'s type (an int for a float field becomes a float), or JobError."""
    want = f.type if isinstance(f.type, str) else f.type.__name__
    kind = _TYPES[want]
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        value = value.item()  # numpy scalars from a script
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if ok and kind is float and not math.isfinite(value):
        raise JobError(f"{f.name} must be a finite number, got {_shown(value)}")
    if not ok:
        raise JobError(f"{f.name} must be {_TYPE_WORDS[want]}, got {_shown(value)} ({_json_type(value)})")
    return value


def _check_field(f: dataclasses.Field, value):
    """Type, then range, of one field; returns the normalised value."""
    value = _check_type(f, value)
    rule: FieldRule = f.metadata["rule"]
    if f.name == "schema_version":
        if value != SCHEMA_VERSION:
            raise JobError(
                f"schema_version {value} is not supported (this generator reads {SCHEMA_VERSION}): "
                "export the job again with the same extension version"
            )
        return value
    if rule.choices and value not in rule.choices:
        raise JobError(f"{f.name} must be one of {', '.join(rule.choices)}; got {_shown(value)}")
    bad = (
        (rule.min is not None and (value <= rule.min if rule.min_exclusive else value < rule.min))
        or (rule.max is not None and value > rule.max)
        or (rule.multiple_of is not None and value % rule.multiple_of)
    )
    if bad:
        raise JobError(f"{f.name} must be {rule.words()}, got {_shown(value)}")
    if (
        rule.file_name
        and value
        and (os.sep in value or "/" in value or "\\" in value or value.startswith("."))
    ):
        raise JobError(f"{f.name} must be a plain file name inside the job directory, got {_shown(value)}")
    return value


# ----------------------------------------------------------------------------------------------
# The job folder


def write_spec(job_dir: str | os.PathLike, spec: JobSpec) -> None:
    spec.validate()
    atomic_write(Path(job_dir) / JOB_JSON, lambda fh: fh.write(spec.to_json().encode()))


def read_spec(job_dir: str | os.PathLike) -> JobSpec:
    """job.json of `job_dir`, checked (JobSpec.from_dict). Refuses a link or special file, more than
    MAX_JOB_JSON_BYTES, invalid UTF-8 or JSON, and nesting too deep to parse."""
    path = Path(job_dir) / JOB_JSON
    try:
        with open_input(path) as fh:
            raw = fh.read(MAX_JOB_JSON_BYTES + 1)
    except FileNotFoundError:
        raise JobError(f"{path} does not exist: is {job_dir} a job directory?") from None
    except OSError as exc:
        raise JobError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_JOB_JSON_BYTES:
        raise JobError(
            f"{path} is larger than {MAX_JOB_JSON_BYTES // 1024} kB: not a job.json this extension wrote"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise JobError(f"{path} nests too deeply to read: export the job again") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and integers of 4300+ digits
        raise JobError(f"{path} is not valid JSON ({exc}): export the job again") from None
    return JobSpec.from_dict(data)


def load_job(job_dir: str | os.PathLike) -> tuple[JobSpec, Conditions]:
    """Read and validate job.json and conditions.npz and check that the files it names exist and are
    plain files. Images are checked by the generator that reads them (PIL lives outside the core)."""
    job_dir = Path(job_dir)
    spec = read_spec(job_dir)
    _require_file(job_dir / REFERENCE_PNG, "export the job again")
    if spec.reference_video:
        _require_file(job_dir / spec.reference_video, "", what="the reference video ")
    cond_path = job_dir / CONDITIONS_NPZ
    _require_file(cond_path, "export the job again")
    cond = Conditions.load(cond_path).validate(spec.num_frames, spec.height, spec.width)
    for name in (DEPTH_NPY, CLEAN_PLATE_DEPTH_NPY) if spec.clean_plate else (DEPTH_NPY,):
        depth = load_depth(job_dir, name)
        if depth is not None and depth.shape != (spec.height, spec.width):
            raise JobError(
                f"{job_dir / name} has shape {depth.shape}, expected ({spec.height}, {spec.width})"
            )
    if spec.clean_plate:
        _require_file(job_dir / CLEAN_PLATE_PNG, "export the job again, or set clean_plate to false")
        _require_file(job_dir / CLEAN_PLATE_DEPTH_NPY, "export the job again, or set clean_plate to false")
    return spec, cond


def _require_file(path: Path, todo: str, what: str = "") -> None:
    try:
        check_input(path)
    except FileNotFoundError:
        raise JobError(f"{what}{path} is missing" + (f": {todo}" if todo else "")) from None


def load_depth(job_dir: str | os.PathLike, name: str = DEPTH_NPY) -> np.ndarray | None:
    """Planar depth (H, W) float32 in scene units (depth.npy, or `name`: clean_plate_depth.npy), or
    None when the job has none. Non-finite or non-positive values (background) are kept: callers
    treat them as "far"."""
    path = Path(job_dir) / name
    if not os.path.lexists(path):
        return None
    try:
        with open_input(path) as fh:
            depth = read_npy(fh, os.fstat(fh.fileno()).st_size, str(path))
    except (JobError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - the file vanished, or an I/O error
        raise JobError(f"{path} is not a readable .npy file ({exc})") from None
    if depth.ndim != 2:
        raise JobError(f"{path} must be a 2-D (H, W) array, got shape {depth.shape}")
    if depth.dtype.kind not in "iuf":
        raise JobError(f"{path} holds {depth.dtype} values, expected numbers (float32 depth)")
    return depth.astype(np.float32, copy=False)


def save_depth(job_dir: str | os.PathLike, depth: np.ndarray, name: str = DEPTH_NPY) -> None:
    atomic_write(Path(job_dir) / name, lambda fh: np.save(fh, np.asarray(depth, np.float32)))
