"""One run per job folder (issue 10, case 5): a run takes JOB/.run-lock; a second run while it is
held ends at once with `error` kind busy, exit 2, and changes nothing in the folder."""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.backend.jobs import parse_events, run_backend

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


def _state(folder):
    """Names, sizes and modification times of everything in the folder (recursively)."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_a_second_run_while_the_lock_is_held_touches_nothing(make_job):
    import fcntl

    job = make_job(num_frames=3)
    assert run_backend("run", job).returncode == 0  # an out/ the second run must leave alone
    (job / "cancel").write_text("")  # nor may it take the holder's cancel file for its own
    fd = os.open(job / ".run-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this test process plays the run in progress
        os.write(fd, b"4242\n")
        before = _state(job)
        r = run_backend("run", job)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        (error,) = parse_events(r.stdout)
        assert error["kind"] == "busy"
        assert f"another run (process 4242) holds the job folder {job}" in error["message"]
        assert "this run changed nothing" in error["message"] and "Wait for the other run" in error["hint"]
        assert _state(job) == before
    finally:
        os.close(fd)


HOLD = """
import pathlib, sys, time
import backend.modes
real_load_mode = backend.modes.load_mode
def held(name):
    mode = real_load_mode(name)
    class Held:
        @staticmethod
        def generate(ctx):
            gate = pathlib.Path(sys.argv[2])
            while not gate.exists():  # the run holds its lock until the test opens the gate
                time.sleep(0.01)
            return mode.generate(ctx)
    return Held
backend.modes.load_mode = held
from backend.__main__ import main
sys.exit(main(["run", sys.argv[1]]))
"""


def _start_held(job, gate):
    """A real run that waits (after `started`, holding the lock) until the file `gate` exists."""
    import subprocess

    from tests.backend.jobs import ROOT, backend_env

    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(job), str(gate)],
        cwd=ROOT,
        env=backend_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = json.loads(proc.stdout.readline())
    assert started["event"] == "started", started
    return proc, started


def test_two_runs_at_once_the_second_is_refused(make_job, tmp_path):
    job = make_job(num_frames=3)
    first, started = _start_held(job, tmp_path / "gate")
    try:
        second = run_backend("run", job)
        assert second.returncode == 2, second.stderr
        (error,) = parse_events(second.stdout)
        assert error["kind"] == "busy" and f"(process {started['pid']})" in error["message"]
        (tmp_path / "gate").write_text("")
        rest, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert parse_events(rest)[-1]["event"] == "done"
    assert (job / "out" / "result.json").is_file()
    assert not (job / ".run-lock").exists()  # the holder removes it when done
    assert not list(job.glob(".out-*"))


def test_a_lock_file_left_by_a_killed_run_does_not_block(make_job):
    job = make_job(num_frames=3)
    (job / ".run-lock").write_text("999999\n")  # nobody holds it: the process is gone
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    assert not (job / ".run-lock").exists()


def test_a_lock_that_is_a_link_is_refused(make_job, tmp_path):
    job = make_job(num_frames=3)
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (job / ".run-lock").symlink_to(target)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)
    assert error["kind"] == "invalid_job" and ".run-lock is a symbolic link" in error["message"]
    assert target.read_text() == "keep me"


def test_the_lock_is_released_when_a_run_is_killed(make_job, tmp_path):
    import signal

    job = make_job(num_frames=3)
    proc, _ = _start_held(job, tmp_path / "never")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    r = run_backend("run", job)  # the system dropped the dead run's lock
    assert r.returncode == 0, r.stdout
    assert not (job / ".run-lock").exists()
