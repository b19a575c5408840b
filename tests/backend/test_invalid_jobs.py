"""A bad job ends with one `error` event of kind invalid_job, exit code 2, and no out/."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_animate import job as jobio
from tests.backend.jobs import parse_events, run_backend, save_png


def _corrupt_json(job):
    (job / "job.json").write_text("{ this is not json")
    return "job.json"


def _schema(job):
    data = json.loads((job / "job.json").read_text())
    data["schema_version"] = 99
    (job / "job.json").write_text(json.dumps(data))
    return "schema_version 99"


def _missing_reference(job):
    (job / "reference.png").unlink()
    return "reference.png"


def _unreadable_image(job):
    (job / "reference.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage" * 10)
    return "not a readable image"


def _wrong_size(job):
    save_png(job / "reference.png", np.zeros((32, 40, 3), np.uint8))
    return "40x32"


def _bad_conditions(job):
    cond = jobio.Conditions.load(job / "conditions.npz")
    cond.c2w = cond.c2w[:-1]  # one camera too few
    cond.save(job / "conditions.npz")
    return "c2w"


def _bad_depth(job):
    np.save(job / "depth.npy", np.ones((10, 10), np.float32))
    return "depth.npy"


def _unknown_mode_field(job):
    data = json.loads((job / "job.json").read_text())
    data["mode"] = "teleport"
    (job / "job.json").write_text(json.dumps(data))
    return "mode"


@pytest.mark.parametrize(
    "break_it",
    [_corrupt_json, _schema, _missing_reference, _unreadable_image, _wrong_size, _bad_conditions, _bad_depth,
     _unknown_mode_field],
)  # fmt: skip
def test_bad_job_is_refused_with_exit_2(make_job, break_it):
    job = make_job(num_frames=3)
    expect = break_it(job)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    events = parse_events(r.stdout)
    # An invalid job produces only the error event (no `started`: it comes after validation).
    assert [e["event"] for e in events] == ["error"], events
    assert events[-1]["kind"] == "invalid_job"
    assert expect in events[-1]["message"]
    assert events[-1]["hint"]
    assert not (job / "out").exists()
    assert not list(job.glob(".out-partial-*"))


def test_a_job_directory_that_does_not_exist(tmp_path):
    r = run_backend("run", tmp_path / "nowhere")
    assert r.returncode == 2
    (event,) = parse_events(r.stdout)
    assert event["kind"] == "invalid_job" and "nowhere" in event["message"]


def test_an_unreadable_reference_video(make_job):
    pytest.importorskip("cv2")
    job = make_job(num_frames=3, reference_video="motion.mp4")
    (job / "motion.mp4").write_bytes(b"not a video at all" * 100)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)  # found while validating: no `started` before it
    assert error["kind"] == "invalid_job" and "motion.mp4" in error["message"]
    assert not (job / "out").exists()
