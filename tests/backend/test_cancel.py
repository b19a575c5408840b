"""Stopping a run: a JOB/cancel file or SIGTERM ends it with exit 3 within ~2 s and no finished-looking
output; SIGKILL mid-run leaves no out/result.json (the next run clears what it left)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.backend.jobs import parse_events, run_backend, start_backend

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Big enough that rendering and writing take a few seconds on two busy cores.
LONG_JOB = dict(width=320, height=240, num_frames=49, camera="dolly", step=0.04)


def _wait_for(proc, predicate, timeout=60.0):
    """Read events until predicate(event) is true; returns the events read so far."""
    events = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
        if predicate(events[-1]):
            return events
    raise AssertionError(f"the awaited event never came; got {events}")


def _finish(proc, timeout):
    t0 = time.monotonic()
    try:
        rest, err = proc.communicate(timeout=timeout)
    except Exception:
        proc.kill()
        proc.communicate()
        raise
    return time.monotonic() - t0, parse_events(rest), err


def _assert_nothing_finished(job):
    assert not (job / "out").exists()
    assert not list(job.glob(".out-partial-*"))


@pytest.mark.parametrize("how", ["cancel_file", "sigterm"])
def test_cancel_during_render(make_job, how):
    job = make_job(**LONG_JOB)
    proc = start_backend("run", job)
    _wait_for(proc, lambda e: e["event"] == "progress" and e["stage"] == "render")
    if how == "cancel_file":
        (job / "cancel").write_text("stop\n")
    else:
        proc.send_signal(signal.SIGTERM)
    elapsed, events, err = _finish(proc, timeout=10)
    assert proc.returncode == 3, err
    assert elapsed < 5, f"took {elapsed:.2f} s to stop"
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert "done" not in [e["event"] for e in events]
    _assert_nothing_finished(job)


SLOW_WRITE = """
import sys, time
import backend.outputs
real_save_png, real_color_flow = backend.outputs.save_png, backend.outputs.color_flow
def slow_save_png(path, image):
    time.sleep(0.2)  # each PNG takes a while: the cancel surely arrives while frames are written
    real_save_png(path, image)
def slow_color_flow(*args, **kwargs):
    time.sleep(0.2)  # so does each frame of the flow video, the write stage's last pass
    return real_color_flow(*args, **kwargs)
backend.outputs.save_png = slow_save_png
backend.outputs.color_flow = slow_color_flow
from backend.__main__ import main
sys.exit(main(["run", sys.argv[1]]))
"""


def test_cancel_while_writing(make_job):
    """The cancel file arrives during the write stage (PNG writing and the flow video's colouring
    slowed down so that it always does: no race, no skip) and the run stops with nothing that
    looks finished."""
    import subprocess

    from tests.backend.jobs import ROOT, backend_env

    job = make_job(**LONG_JOB)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(job)],
        cwd=ROOT,
        env=backend_env() | {"ANIMATE_ANYTHING_THREADS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, lambda e: e["event"] == "progress" and e["stage"] == "write")
    assert list(job.glob(".out-partial-*")), "the write stage writes into a partial folder"
    (job / "cancel").write_text("stop\n")
    elapsed, events, err = _finish(proc, timeout=10)
    assert proc.returncode == 3, err
    assert elapsed < 5
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert "done" not in [e["event"] for e in events]
    _assert_nothing_finished(job)


def test_a_cancel_file_present_at_start_cancels(make_job):
    job = make_job(num_frames=3)
    (job / "cancel").write_text("")
    r = run_backend("run", job)
    assert r.returncode == 3
    assert parse_events(r.stdout)[-1]["kind"] == "cancelled"
    _assert_nothing_finished(job)


def test_sigkill_mid_run_leaves_no_result(make_job):
    job = make_job(**LONG_JOB)
    proc = start_backend("run", job)
    _wait_for(proc, lambda e: e["event"] == "progress" and e["stage"] == "write")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert not (job / "out" / "result.json").exists()
    assert not (job / "out").exists()
    # The next run removes the dead run's partial folder and succeeds.
    r = run_backend("run", job, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (job / "out" / "result.json").is_file()
    assert not list(job.glob(".out-partial-*"))


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_watch_parent_stops_a_run_whose_parent_died(make_job):
    import subprocess

    from tests.backend.jobs import ROOT, backend_env

    job = make_job(**LONG_JOB)
    events_file = job.parent / "events.jsonl"
    starter = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-m', 'backend', 'run', {str(job)!r}, '--watch-parent'],"
        f" stdout=open({str(events_file)!r}, 'wb'), stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", starter], cwd=ROOT, env=backend_env(), capture_output=True, text=True
    )
    pid = int(r.stdout.strip())  # the starter has exited: the generator is an orphan now
    deadline = time.monotonic() + 15
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid), "the generator kept running after its parent ended"
    assert not (job / "out" / "result.json").exists()
    # It ended because it noticed the parent was gone (cancelled), not because it failed to start.
    events = parse_events(events_file.read_text())
    assert events and events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled", events
    assert [e["event"] for e in events].count("error") == 1 and "done" not in [e["event"] for e in events]


STUCK = """
import ctypes, sys, types
import backend.modes
def generate(ctx):
    ctx.progress("model", 0, 1, "entering a long native call")
    ctypes.CDLL(None).sleep(30)  # not interruptible by Python: only the watcher can end this
backend.modes.load_mode = lambda name: types.SimpleNamespace(generate=generate)
from backend.__main__ import main
sys.exit(main(["run", sys.argv[1]]))
"""


def test_a_run_stuck_in_native_code_still_stops(make_job):
    """The cancel file cannot interrupt a C call; the watcher reports and exits 3 after ~1.5 s."""
    import subprocess

    from tests.backend.jobs import ROOT, backend_env

    job = make_job(num_frames=3)
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK, str(job)],
        cwd=ROOT,
        env=backend_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(proc, lambda e: e["event"] == "progress" and e["stage"] == "model")
    (job / "cancel").write_text("")
    elapsed, events, err = _finish(proc, timeout=10)
    assert proc.returncode == 3, err
    assert 1.0 < elapsed < 3.0
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    _assert_nothing_finished(job)


def test_a_signal_inside_an_import_is_raised_once_the_import_is_done(tmp_path, monkeypatch):
    """The SIGTERM handler does not raise inside the import machinery (OpenCV's module init once
    printed the Cancelled raised under it, a traceback on stderr): the module imports whole, and
    the watcher interrupts the main thread again until Cancelled lands, well within the grace."""
    import importlib

    from backend.cancel import CancelState, CancelWatcher
    from backend.errors import Cancelled

    (tmp_path / "signalled_during_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "for _ in range(50):  # the handler runs between these bytecodes, inside the import\n"
        "    time.sleep(0.001)\n"
        "DONE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    state = CancelState()
    watcher = CancelWatcher(state, tmp_path / "cancel", poll=0.01, grace=30.0).start()
    try:
        module = importlib.import_module("signalled_during_import")
        assert module.DONE and state.requested and not state.raised
        t0 = time.monotonic()
        with pytest.raises(Cancelled, match="SIGTERM"):
            while time.monotonic() - t0 < 5.0:
                time.sleep(0.001)
        assert time.monotonic() - t0 < 1.0 and state.raised
    finally:
        watcher.stop()
        sys.modules.pop("signalled_during_import", None)
