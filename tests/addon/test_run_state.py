"""RunState: the generator's events become what the UI shows, without Blender."""

from __future__ import annotations

import pytest

from blender_animate.addon.run_state import RunState


def test_progress_events_give_stage_and_fraction(tmp_path):
    run = RunState(tmp_path / "job")
    assert (run.state, run.stage, run.fraction) == ("running", "starting", 0.0)
    assert run.apply({"event": "started", "job": "x", "mode": "preview", "pid": 1}) is None
    assert run.stage == "started"
    assert run.apply({"event": "progress", "stage": "flow", "step": 3, "total": 9}) is None
    assert run.stage == "flow 3/9" and run.fraction == pytest.approx(1 / 3)
    # Out-of-range and missing numbers are clamped, never raise.
    run.apply({"event": "progress", "stage": "write", "step": 12, "total": 0})
    assert run.stage == "write 1/1" and run.fraction == 1.0
    run.apply({"event": "warning", "message": "no depth"})
    run.apply({"event": "log", "message": "a library printed this"})
    assert run.warnings == ["no depth"] and run.log == ["a library printed this"]
    assert not run.finished


def test_done_is_left_to_the_caller_and_errors_end_the_run(tmp_path):
    run = RunState(tmp_path / "job")
    assert run.apply({"event": "done", "outputs": {}}) == "done" and not run.finished
    run.end("done", "Imported 9 frames")
    assert run.finished and run.fraction == 1.0 and run.full_message() == "Imported 9 frames"

    failed = RunState(tmp_path / "job", own_python=False)
    event = {"event": "error", "kind": "missing_dependency", "message": "no torch", "hint": "Install it."}
    assert failed.apply(event) == "ended"
    assert failed.state == "failed" and "Blender's own Python" in failed.hint
    assert failed.full_message().endswith(f"(job folder kept: {tmp_path / 'job'})")

    cancelled = RunState(tmp_path / "job")
    cancelled.apply({"event": "error", "kind": "cancelled", "message": "cancelled", "hint": ""})
    assert cancelled.state == "cancelled" and "nothing was imported" in cancelled.message
    with pytest.raises(ValueError, match="ends as one of"):
        cancelled.end("running", "no")
