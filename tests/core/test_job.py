"""The job contract (blender_animate/job.py): round trips and every validation error."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from blender_animate.job import (
    CONDITIONS_NPZ,
    DEPTH_NPY,
    JOB_JSON,
    REFERENCE_PNG,
    Conditions,
    JobError,
    JobSpec,
    atomic_write,
    load_depth,
    load_job,
    read_spec,
    save_depth,
    write_spec,
)

F, H, W = 5, 16, 24


def conditions(P=2, R=1):
    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4), (F, 1, 1))
    c2w[:, 0, 3] = np.linspace(0, 1, F)
    K = np.tile(np.array([[20.0, 0, 12], [0, 20, 8], [0, 0, 1]]), (F, 1, 1))
    tracks = rng.uniform(0, 16, (P, F, 2)).astype(np.float32)
    masks = np.zeros((R, H, W), bool)
    masks[:, 2:6, 3:9] = True
    return Conditions.create(c2w, K, tracks, None, [4.0] * P, masks, height=H, width=W)


def make_job(tmp_path, **spec_kw):
    spec = JobSpec(width=W, height=H, num_frames=F, **spec_kw)
    write_spec(tmp_path, spec)
    (tmp_path / REFERENCE_PNG).write_bytes(b"png")  # the core does not decode images
    conditions().save(tmp_path / CONDITIONS_NPZ)
    return spec


def test_spec_round_trip(tmp_path):
    spec = JobSpec(mode="guided", prompt="a cat", seed=7, fallback_depth=3.5, info={"blender": "5.0"})
    write_spec(tmp_path, spec)
    assert read_spec(tmp_path) == spec
    assert json.loads((tmp_path / JOB_JSON).read_text())["prompt"] == "a cat"


def test_conditions_round_trip_and_defaults(tmp_path):
    cond = conditions()
    cond.save(tmp_path / "c.npz")
    back = Conditions.load(tmp_path / "c.npz").validate(F, H, W)
    for name in ("c2w", "K", "tracks", "track_visible", "track_radius", "region_masks"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cond, name))
        assert getattr(back, name).dtype == getattr(cond, name).dtype
    empty = Conditions.create(cond.c2w, cond.K, height=H, width=W).validate(F, H, W)
    assert empty.tracks.shape == (0, F, 2) and empty.region_masks.shape == (0, H, W)


def test_load_job_and_depth(tmp_path):
    spec = make_job(tmp_path)
    got, cond = load_job(tmp_path)
    assert got == spec and cond.tracks.shape == (2, F, 2)
    assert load_depth(tmp_path) is None
    depth = np.full((H, W), 2.0)
    depth[0, 0] = np.inf  # background is kept (callers treat it as far)
    save_depth(tmp_path, depth)
    assert load_depth(tmp_path).dtype == np.float32 and np.isinf(load_depth(tmp_path)[0, 0])
    load_job(tmp_path)
    save_depth(tmp_path, np.ones((H, W + 1)))
    with pytest.raises(JobError, match="depth.npy has shape"):
        load_job(tmp_path)
    np.save(tmp_path / DEPTH_NPY, np.ones(3))
    with pytest.raises(JobError, match="2-D"):
        load_depth(tmp_path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("schema_version", 2, "schema_version"),
        ("mode", "fast", "mode must be one of"),
        ("device", "tpu", "device"),
        ("dtype", "int8", "dtype"),
        ("offload", "disk", "offload"),
        ("vae_tiling", "yes", "vae_tiling"),
        ("reference_source", "camera", "reference_source"),
        ("width", 721, "width must be a multiple of 8"),
        ("height", 8, "height must be a multiple of 8"),
        ("width", 720.0, "width"),
        ("num_frames", 1, "num_frames"),
        ("fps", 0, "fps"),
        ("steps", 0, "steps"),
        ("strength", 1.5, "strength"),
        ("guidance_scale", -1.0, "guidance_scale"),
        ("seed", -1, "seed"),
        ("fallback_depth", -1.0, "fallback_depth"),
        ("fallback_depth", float("nan"), "fallback_depth"),
        ("reference_video", "../v.mp4", "plain file name"),
        ("reference_video", ".hidden.mp4", "plain file name"),
    ],
)
def test_spec_validation_errors(field, value, message):
    with pytest.raises(JobError, match=message):
        JobSpec(**{field: value}).validate()


def test_spec_needs_4k_plus_1_frames_for_models():
    JobSpec(mode="preview", num_frames=48).validate()
    with pytest.raises(JobError, match="4k\\+1"):
        JobSpec(mode="guided", num_frames=48).validate()


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "JSON object"),
        ({"schema_version": 1, "colour": 1}, "unknown fields"),
        ({"mode": "preview"}, "no schema_version"),
    ],
)
def test_spec_from_dict_errors(data, message):
    with pytest.raises(JobError, match=message):
        JobSpec.from_dict(data)


def test_read_spec_errors(tmp_path):
    with pytest.raises(JobError, match="does not exist"):
        read_spec(tmp_path)
    (tmp_path / JOB_JSON).write_text("{not json")
    with pytest.raises(JobError, match="not valid JSON"):
        read_spec(tmp_path)
    (tmp_path / JOB_JSON).write_text(json.dumps({"schema_version": 1, "width": "wide"}))
    with pytest.raises(JobError, match="width"):
        read_spec(tmp_path)


def test_load_job_missing_files(tmp_path):
    make_job(tmp_path, reference_video="motion.mp4")
    with pytest.raises(JobError, match="reference video"):
        load_job(tmp_path)
    (tmp_path / "motion.mp4").write_bytes(b"")
    load_job(tmp_path)
    (tmp_path / CONDITIONS_NPZ).unlink()
    with pytest.raises(JobError, match="conditions.npz is missing"):
        load_job(tmp_path)
    (tmp_path / REFERENCE_PNG).unlink()
    with pytest.raises(JobError, match="reference.png is missing"):
        load_job(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: setattr(c, "c2w", c.c2w[:3]), "c2w has shape"),
        (lambda c: setattr(c, "K", c.K[:, :2]), "K has shape"),
        (lambda c: setattr(c, "tracks", c.tracks[:, :3]), "tracks has shape"),
        (lambda c: setattr(c, "track_visible", c.track_visible[:1]), "track_visible has shape"),
        (lambda c: setattr(c, "track_radius", c.track_radius[:1]), "track_radius has shape"),
        (lambda c: setattr(c, "region_masks", c.region_masks[:, :3]), "region_masks has shape"),
        (lambda c: c.tracks.__setitem__((0, 0, 0), np.nan), "tracks holds NaN"),
        (lambda c: c.K.__setitem__((0, 0, 0), np.inf), "K holds NaN"),
        (lambda c: c.track_radius.__setitem__(0, 0.0), "track_radius must be > 0"),
    ],
)
def test_conditions_validation_errors(change, message):
    cond = conditions()
    change(cond)
    with pytest.raises(JobError, match=message):
        cond.validate(F, H, W)


def test_conditions_load_errors(tmp_path):
    np.savez(tmp_path / "partial.npz", c2w=np.eye(4)[None])
    with pytest.raises(JobError, match="missing arrays"):
        Conditions.load(tmp_path / "partial.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(JobError, match="not a readable conditions file"):
        Conditions.load(tmp_path / "junk.npz")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", fail)
    assert list(tmp_path.iterdir()) == []
    atomic_write(tmp_path / "sub" / "out.bin", lambda fh: fh.write(b"ok"))
    assert (tmp_path / "sub" / "out.bin").read_bytes() == b"ok"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.bin"]


# ----------------------------------------------------------------------------------------------
# The typed schema: every field's type is checked by name before its range (issue 10, case 1).


def _job_json(**changes):
    data = json.loads(JobSpec(width=W, height=H, num_frames=F).to_json())
    for name, value in changes.items():
        if value is _MISSING:
            del data[name]
        else:
            data[name] = value
    return data


_MISSING = object()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("fps", "fast", 'fps must be a number, got "fast" (text)'),
        ("guidance_scale", "high", 'guidance_scale must be a number, got "high" (text)'),
        ("strength", [], "strength must be a number, got [] (a list)"),
        ("fallback_depth", "3", 'fallback_depth must be a number, got "3" (text)'),
        ("schema_version", "1", 'schema_version must be an integer, got "1" (text)'),
        ("allow_download", "false", 'allow_download must be true or false, got "false" (text)'),
        ("allow_download", 0, "allow_download must be true or false, got 0 (an integer)"),
        ("seed", True, "seed must be an integer, got true (true/false)"),
        ("width", 64.0, "width must be an integer, got 64.0 (a decimal number)"),
        ("steps", None, "steps must be an integer, got null (null)"),
        ("prompt", 7, "prompt must be text, got 7 (an integer)"),
        ("info", [], "info must be an object, got [] (a list)"),
        ("mode", ["preview"], 'mode must be text, got ["preview"] (a list)'),
        ("fps", float("inf"), "fps must be a finite number"),
        ("seed", 2**64, "seed must be between 0 and"),
        ("fps", 1000, "fps must be more than 0 and at most 240 frames per second, got 1000"),
    ],
)
def test_each_field_is_type_checked_by_name(field, value, message):
    with pytest.raises(JobError) as info:
        JobSpec.from_dict(_job_json(**{field: value}))
    assert message in str(info.value)
    assert str(info.value).startswith("job.json: ")
    assert "numpy" not in str(info.value) and "TypeError" not in str(info.value)


@pytest.mark.parametrize("missing", ["width", "height", "num_frames", "mode"])
def test_a_missing_required_field_is_named(missing):
    with pytest.raises(JobError, match=f"job.json lacks the required field {missing}: export the job again"):
        JobSpec.from_dict(_job_json(**{missing: _MISSING}))
    with pytest.raises(JobError, match="required fields width, height, num_frames"):
        JobSpec.from_dict(_job_json(width=_MISSING, height=_MISSING, num_frames=_MISSING))


def test_optional_fields_default_and_numbers_are_normalised():
    spec = JobSpec.from_dict(_job_json(fps=12, prompt=_MISSING, seed=_MISSING))
    assert spec.fps == 12.0 and isinstance(spec.fps, float)
    assert spec.prompt == "" and spec.seed == 0
    assert JobSpec(seed=np.int64(3), fps=np.float32(8)).validate().seed == 3  # numpy scalars from scripts


def test_the_schema_version_is_checked_first():
    # A newer schema may have new fields: its version is what to talk about, not the fields.
    with pytest.raises(JobError, match="schema_version 2 is not supported"):
        JobSpec.from_dict({**_job_json(), "schema_version": 2, "new_field": 1})


def test_the_schema_is_one_declarative_table():
    """Every field has a rule and a JSON type; adding a field is one line `name: type = _field(...)`."""
    import dataclasses

    from blender_animate.job import FieldRule

    for f in dataclasses.fields(JobSpec):
        assert isinstance(f.metadata["rule"], FieldRule), f.name
        assert f.type in ("int", "float", "str", "bool", "dict"), (f.name, f.type)
    src = (Path(__file__).parents[2] / "blender_animate/job.py").read_text()
    body = src[src.index("class JobSpec") : src.index("    def validate")]
    for f in dataclasses.fields(JobSpec):
        (line,) = [ln for ln in body.splitlines() if ln.strip().startswith(f"{f.name}:")]
        code = line.split("  #")[0].rstrip()
        assert "_field(" in code and code.endswith(")"), line


# ----------------------------------------------------------------------------------------------
# conditions.npz and depth.npy contents (case 2) and decoders (case 3)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.K.__setitem__((slice(None), 0, 0), -20.0), "K of frame 0 has a focal length <= 0"),
        (lambda c: setattr(c, "K", np.zeros_like(c.K)), "focal length <= 0"),
        (
            lambda c: c.c2w.__setitem__((slice(None), slice(0, 3), slice(0, 3)), 2 * np.eye(3)),
            "not orthonormal",
        ),
        (lambda c: c.c2w.__setitem__((1, 3, 0), 0.5), "c2w of frame 1 is not rigid"),
        (lambda c: setattr(c, "tracks", c.tracks.astype(str)), "tracks holds text"),
        (lambda c: setattr(c, "track_visible", c.track_visible.astype(np.float32)), "expected booleans"),
        (lambda c: setattr(c, "K", c.K.astype(complex)), "K holds complex numbers"),
    ],
)
def test_camera_and_array_contents_are_validated(tmp_path, change, message):
    cond = conditions()
    change(cond)
    path = tmp_path / CONDITIONS_NPZ
    np.savez(path, **{name: getattr(cond, name) for name in Conditions.DTYPES})
    with pytest.raises(JobError, match=message):
        Conditions.load(path).validate(F, H, W)


def test_validate_converts_dtypes():
    cond = conditions()
    cond.K = cond.K.astype(np.float32)
    cond.track_visible = cond.track_visible.astype(np.uint8)
    cond.validate(F, H, W)
    assert cond.K.dtype == np.float64 and cond.track_visible.dtype == bool


def test_object_arrays_are_never_unpickled(tmp_path):
    arrays = {name: getattr(conditions(), name) for name in Conditions.DTYPES}
    arrays["tracks"] = np.array([{"evil": 1}, None], dtype=object)
    np.savez(tmp_path / "c.npz", **arrays)  # np.savez pickles object arrays
    with pytest.raises(JobError, match="Python objects"):
        Conditions.load(tmp_path / "c.npz")


def _npz_bytes(**arrays) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def test_corrupt_deflate_data_is_an_invalid_job(tmp_path):
    good = {name: getattr(conditions(), name) for name in Conditions.DTYPES}
    data = bytearray(_npz_bytes(**good))
    # The first member's compressed data starts after its 30-byte local header and name.
    name_len = int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")
    for i in range(30 + name_len + 2, 30 + name_len + 40):
        data[i] ^= 0x5A
    (tmp_path / "c.npz").write_bytes(bytes(data))
    with pytest.raises(JobError, match="not a readable conditions file \\((error|BadZipFile)"):
        Conditions.load(tmp_path / "c.npz")


def test_an_array_header_that_announces_more_than_the_file_holds(tmp_path):
    import zipfile

    header = np.lib.format
    import io

    fh = io.BytesIO()
    header.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "c.npz", "w") as zf:
        for name in Conditions.DTYPES:
            zf.writestr(name + ".npy", fh.getvalue() + b"\0" * 64)
    with pytest.raises(JobError, match="too big"):
        Conditions.load(tmp_path / "c.npz")
    fh = io.BytesIO()
    header.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (1000,)})
    with zipfile.ZipFile(tmp_path / "c.npz", "w") as zf:
        for name in Conditions.DTYPES:
            zf.writestr(name + ".npy", fh.getvalue() + b"\0" * 64)
    with pytest.raises(JobError, match="cut short"):
        Conditions.load(tmp_path / "c.npz")


def test_depth_must_hold_numbers(tmp_path):
    make_job(tmp_path)
    np.save(tmp_path / DEPTH_NPY, np.full((H, W), "far"))
    with pytest.raises(JobError, match="depth.npy holds text"):
        load_job(tmp_path)
    np.save(tmp_path / DEPTH_NPY, np.ones((H, W), np.float16))
    assert load_depth(tmp_path).dtype == np.float32


def test_job_json_decoder_limits(tmp_path):
    (tmp_path / JOB_JSON).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(JobError, match="nests too deeply"):
        read_spec(tmp_path)
    (tmp_path / JOB_JSON).write_text(json.dumps({**_job_json(), "prompt": "x" * (2 << 20)}))
    with pytest.raises(JobError, match="larger than 1024 kB"):
        read_spec(tmp_path)
    (tmp_path / JOB_JSON).write_text('{"schema_version": 1, "width": ' + "9" * 5000 + "}")
    with pytest.raises(JobError, match="not valid JSON"):
        read_spec(tmp_path)
    (tmp_path / JOB_JSON).write_bytes(b'{"prompt": "\xff"}')
    with pytest.raises(JobError, match="not valid JSON"):
        read_spec(tmp_path)


# ----------------------------------------------------------------------------------------------
# Input files are plain files inside the job folder (case 8)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
@pytest.mark.parametrize("name", [JOB_JSON, REFERENCE_PNG, CONDITIONS_NPZ, DEPTH_NPY])
def test_symbolic_links_are_refused(tmp_path, name):
    make_job(tmp_path / "job")
    job = tmp_path / "job"
    save_depth(job, np.ones((H, W)))
    elsewhere = tmp_path / f"elsewhere-{name}"
    (job / name).rename(elsewhere)
    (job / name).symlink_to(elsewhere)
    with pytest.raises(JobError, match=f"{name} is a symbolic link"):
        load_job(job)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_job_json_linked_to_dev_zero_is_refused_unread(tmp_path):
    (tmp_path / JOB_JSON).symlink_to("/dev/zero")
    with pytest.raises(JobError, match="symbolic link"):
        read_spec(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    make_job(tmp_path)
    (tmp_path / CONDITIONS_NPZ).unlink()
    os.mkfifo(tmp_path / CONDITIONS_NPZ)  # opening it for reading would wait for a writer forever
    with pytest.raises(JobError, match="not a regular file"):
        load_job(tmp_path)


# ----------------------------------------------------------------------------------------------
# atomic_write gives files the mode of ordinary files (case 13)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_the_mode_of_ordinary_files(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic.bin", lambda fh: fh.write(b"x"))
        (tmp_path / "plain.bin").write_bytes(b"x")
        make_job(tmp_path / "job")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)
    assert mode == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "atomic.bin").stat().st_mode) == mode
    for p in (tmp_path / "job").iterdir():  # job.json, reference.png, conditions.npz
        assert stat.S_IMODE(p.stat().st_mode) == mode, p.name


def test_track_and_region_counts_are_bounded():
    from blender_animate.job import MAX_REGIONS, MAX_TRACKS

    cond = conditions(P=MAX_TRACKS + 1, R=0)
    with pytest.raises(JobError, match=f"holds {MAX_TRACKS + 1} tracks, more than the {MAX_TRACKS}"):
        cond.validate(F, H, W)
    cond = conditions(P=1, R=MAX_REGIONS + 1)
    with pytest.raises(JobError, match="region masks"):
        cond.validate(F, H, W)
