"""The job contract (blender_animate/job.py): round trips and every validation error."""

import json

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
