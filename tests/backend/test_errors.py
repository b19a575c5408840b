"""Failure kinds, hints and exit codes: classification, and the runner around a failing mode."""

from __future__ import annotations

import io
import json
import types

import numpy as np
import pytest

import backend.modes
from backend.errors import JobFailure, classify, exit_code
from backend.events import Events
from backend.modes import ModeResult
from backend.runner import run
from blender_animate.job import JobError


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.cuda.OutOfMemoryError (matched by name, torch is never imported)."""


@pytest.mark.parametrize(
    "exc,kind",
    [
        (MemoryError(), "out_of_memory"),
        (OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out_of_memory"),
        (RuntimeError("MPS backend out of memory"), "out_of_memory"),
        (ModuleNotFoundError("No module named 'diffusers'", name="diffusers"), "missing_dependency"),
        (JobError("width must be a multiple of 8"), "invalid_job"),
        (JobFailure("missing_model", "no weights"), "missing_model"),
        (KeyboardInterrupt(), "cancelled"),
        (ValueError("boom"), "internal"),
    ],
)
def test_classify(exc, kind):
    failure = classify(exc)
    assert failure.kind == kind
    assert failure.hint  # every kind comes with something to do


def test_a_cancel_that_library_code_wrapped_stays_a_cancel():
    """The SIGTERM handler raises Cancelled wherever the main thread is; raised inside an Enum
    class being built by an import, Python's enum re-raises it as a TypeError "from" it (what a
    SIGTERM 0.15 s into a run once gave), and a cleanup error while it propagates has it as
    context: both are the cancel, not an internal error."""
    from backend.errors import Cancelled

    def wrapped(inner, outer, chain):
        try:
            try:
                raise inner
            except BaseException as exc:
                if chain == "cause":
                    raise outer from exc
                if chain == "context":
                    raise outer  # noqa: B904 - the implicit context is the point
                raise outer from None
        except Exception as exc:
            return classify(exc)

    enum_error = TypeError("_value_ not set in __new__, unable to create it")
    got = wrapped(Cancelled("cancelled (SIGTERM)"), enum_error, "cause")
    assert (got.kind, got.message) == ("cancelled", "cancelled (SIGTERM)")
    assert wrapped(KeyboardInterrupt(), ValueError("while stopping"), "context").kind == "cancelled"
    assert wrapped(Cancelled(), OSError("cleanup failed"), "none").kind == "internal"  # not chained
    assert wrapped(ValueError("a"), ValueError("b"), "cause").kind == "internal"


def test_exit_codes():
    assert exit_code("invalid_job") == 2
    assert exit_code("cancelled") == 3
    assert {exit_code(k) for k in ("missing_dependency", "missing_model", "out_of_memory", "internal")} == {1}
    with pytest.raises(ValueError, match="unknown failure kind 'weird'"):
        JobFailure("weird", "x")


def _run_with_mode(monkeypatch, job, generate):
    monkeypatch.setattr(backend.modes, "load_mode", lambda name: types.SimpleNamespace(generate=generate))
    buf = io.BytesIO()
    code = run(job, events=Events(buf))
    return code, [json.loads(line) for line in buf.getvalue().decode().splitlines()]


@pytest.mark.parametrize(
    "exc,kind,code",
    [
        (MemoryError("cannot allocate"), "out_of_memory", 1),
        (ModuleNotFoundError("No module named 'diffusers'", name="diffusers"), "missing_dependency", 1),
        (JobFailure("missing_model", "no CogVideoX found", "set the model folder"), "missing_model", 1),
        (ZeroDivisionError("bug"), "internal", 1),
    ],
)
def test_a_failing_mode_ends_with_one_error_event(monkeypatch, make_job, exc, kind, code):
    job = make_job(num_frames=3)

    def generate(ctx):
        ctx.progress("model", 0, 1)
        raise exc

    rc, events = _run_with_mode(monkeypatch, job, generate)
    assert rc == code
    assert [e["event"] for e in events] == ["started", "progress", "error"]
    assert events[-1]["kind"] == kind and events[-1]["hint"]
    assert not (job / "out").exists() and not list(job.glob(".out-*"))


def test_a_mode_that_breaks_the_contract_is_an_internal_error(monkeypatch, make_job):
    job = make_job(num_frames=3)
    rc, events = _run_with_mode(monkeypatch, job, lambda ctx: ModeResult(np.zeros((2, 48, 64, 3), np.uint8)))
    assert rc == 1
    assert events[-1]["kind"] == "internal" and "(3, 48, 64, 3)" in events[-1]["message"]


def test_a_mode_without_flow_writes_no_flow_files(monkeypatch, make_job):
    job = make_job(num_frames=3)
    frames = np.full((3, 48, 64, 3), 128, np.uint8)
    rc, events = _run_with_mode(monkeypatch, job, lambda ctx: ModeResult(frames, None, {"note": "x"}))
    assert rc == 0
    outputs = events[-1]["outputs"]
    assert outputs["flow"] is None and outputs["flow_video"] is None and outputs["video"] == "out/video.mp4"
    assert not (job / "out/flow.npz").exists()
    assert json.loads((job / "out/result.json").read_text())["info"] == {"note": "x"}


def test_flow_beyond_float16_is_clipped_in_the_file(monkeypatch, make_job):
    from blender_animate.flowviz import load_flow

    job = make_job(num_frames=3)
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    flow = np.zeros((3, 48, 64, 2), np.float32)
    flow[2, 0, 0, 0] = 1e6  # a point far off-screen (an orbit past 90 degrees)
    rc, events = _run_with_mode(monkeypatch, job, lambda ctx: ModeResult(frames, flow))
    assert rc == 0, events
    saved = load_flow(job / "out/flow.npz")
    assert 59000 < saved[2, 0, 0, 0] <= 60000 and saved[1].max() == 0


def test_job_errors_are_matched_by_type_not_by_name():
    # Same name, another class: a bug, not an invalid job.
    impostor = type("JobError", (ValueError,), {})
    assert classify(impostor("x")).kind == "internal"
    assert classify(JobError("x")).kind == "invalid_job"
