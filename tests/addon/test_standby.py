"""GeneratorProcess(standby=True) with the real processes: a run leaves a standby generator
(blender_animate.addon.standby), the next matching run starts on it, anything else starts cold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blender_animate.addon import standby
from blender_animate.addon.client import GeneratorProcess
from tests.addon.test_client import assert_group_gone, run_to_end, terminal
from tests.jobfiles import make_job


@pytest.fixture(autouse=True)
def no_standby_left():
    standby.stop()
    yield
    standby.stop()


def test_a_run_leaves_a_standby_and_the_next_run_starts_on_it(tmp_path):
    first = GeneratorProcess(make_job(tmp_path / "a"), standby=True).start()
    assert not first.warm
    assert terminal(run_to_end(first))["event"] == "done"
    waiting = standby.current()
    assert waiting is not None and waiting.poll() is None
    second = GeneratorProcess(make_job(tmp_path / "b"), standby=True).start()
    assert second.warm and second.proc is waiting and standby.current() is None
    events = run_to_end(second)
    assert events[0]["event"] == "started" and events[0]["pid"] == waiting.pid  # no `ready` line
    end = terminal(events)
    assert end["event"] == "done", end
    assert second.proc.wait(timeout=10) == 0 and second.log_path.is_file()
    assert json.loads((second.job_dir / end["outputs"]["result"]).read_text())["num_frames"] == 9
    third = standby.current()  # and the next is ready, its heap grown for this job's frames
    assert third is not None and third.pid != waiting.pid
    if Path(f"/proc/{third.pid}/cmdline").exists():
        argv = Path(f"/proc/{third.pid}/cmdline").read_bytes().split(b"\0")
        assert argv[-3:-1] == [b"--frame-size", b"64x48"]
    standby.stop()
    assert third.poll() is not None
    assert_group_gone(second)


def test_a_run_with_other_arguments_starts_cold_and_ends_the_standby(tmp_path):
    first = GeneratorProcess(make_job(tmp_path / "a"), standby=True).start()
    run_to_end(first)
    waiting = standby.current()
    other = GeneratorProcess(make_job(tmp_path / "b"), args=["--device", "cpu"], standby=True).start()
    assert not other.warm and other.proc is not waiting
    assert waiting.wait(timeout=5) is not None
    assert terminal(run_to_end(other))["event"] == "done"
    assert standby.current() is not None  # for --device cpu now
    plain = GeneratorProcess(make_job(tmp_path / "c")).start()  # standby=False: not taken
    assert not plain.warm and terminal(run_to_end(plain))["event"] == "done"
    assert standby.current() is not None


def test_a_standby_that_died_is_replaced_by_a_cold_start(tmp_path):
    run_to_end(GeneratorProcess(make_job(tmp_path / "a"), standby=True).start())
    waiting = standby.current()
    waiting.kill()
    waiting.wait()
    proc = GeneratorProcess(make_job(tmp_path / "b"), standby=True).start()
    assert not proc.warm and terminal(run_to_end(proc))["event"] == "done"


def test_a_warm_run_is_cancelled_like_a_cold_one(tmp_path):
    run_to_end(GeneratorProcess(make_job(tmp_path / "a"), standby=True).start())
    job = make_job(tmp_path / "b", width=256, height=192, num_frames=49)
    proc = GeneratorProcess(job, standby=True).start()
    assert proc.warm

    def cancel_when_started(p, event):
        if event["event"] == "started":
            p.cancel()

    end = terminal(run_to_end(proc, on_event=cancel_when_started))
    assert end["event"] == "error" and end["kind"] == "cancelled", end
    assert not (job / "out").exists()


def test_no_standby_after_a_missing_interpreter(tmp_path):
    proc = GeneratorProcess(
        make_job(tmp_path / "a"), python=str(tmp_path / "no-python"), standby=True
    ).start()
    assert terminal(run_to_end(proc))["kind"] == "missing_interpreter"
    assert standby.current() is None


def test_a_standby_warmed_for_a_mode_is_kept_for_that_mode_and_taken_by_any_run(tmp_path):
    """prepare's warm arguments (what a guided run leaves: --warm guided) are part of what is kept
    but not of what a run takes: a warm guided standby runs the next job whatever its mode."""
    proc = GeneratorProcess(make_job(tmp_path / "a"), standby=True)
    args = (proc.standby_command(), proc.extension_root, proc.environment())
    guided = standby.prepare(*args, ["--warm", "guided"])
    assert guided.args[-2:] == ["--warm", "guided"]
    assert standby.prepare(*args, ["--warm", "guided"]) is guided
    plain = standby.prepare(*args)  # another warm-up: replaced
    assert plain is not guided and guided.wait(timeout=5) is not None
    standby.prepare(*args, ["--warm", "guided"])
    proc.start()
    assert proc.warm and terminal(run_to_end(proc))["event"] == "done" and proc.mode == "preview"
    assert standby.current().args[-2:] != ["--warm", "guided"]  # a preview run leaves a preview standby


def test_a_run_with_its_own_variables_takes_the_standby_and_leaves_one_without_them(tmp_path):
    """A retimed import's run (ANIMATE_ANYTHING_PNG=1, a job's own variable) starts on the standby
    a plain run left, gets its PNG frames, and leaves a standby that the next plain run takes."""
    run_to_end(GeneratorProcess(make_job(tmp_path / "a"), standby=True).start())
    waiting = standby.current()
    env = {**os.environ, "ANIMATE_ANYTHING_PNG": "1"}
    retimed = GeneratorProcess(make_job(tmp_path / "b"), env=env, standby=True).start()
    assert retimed.warm and retimed.proc is waiting
    end = terminal(run_to_end(retimed))
    assert end["event"] == "done" and end["outputs"]["frames"] == "out/frames"
    left = standby.current()
    environ = Path(f"/proc/{left.pid}/environ")
    if environ.exists():
        assert b"ANIMATE_ANYTHING_PNG=" not in environ.read_bytes()
    plain = GeneratorProcess(make_job(tmp_path / "c"), standby=True).start()
    assert plain.warm and plain.proc is left
    end = terminal(run_to_end(plain))
    assert end["event"] == "done" and end["outputs"]["frames"] is None
