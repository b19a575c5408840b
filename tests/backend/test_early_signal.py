"""A SIGTERM during start-up (before the runner's handlers exist) still ends `run` with exit 3 and
an error event of kind cancelled (issue 10, case 6); other commands keep the default behaviour."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.backend.jobs import ROOT, backend_env, parse_events

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc/<pid>/status")


def _catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (its SigCgt mask in /proc)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except FileNotFoundError:
        pass
    return False


def _start(*args, extra_paths=None):
    return subprocess.Popen(
        [sys.executable, "-m", "backend", *map(str, args)],
        cwd=ROOT,
        env=backend_env(extra_paths),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_handler(proc, sig=signal.SIGTERM, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not _catches(proc.pid, sig):
        assert proc.poll() is None, "the process ended before catching the signal"
        assert time.monotonic() < deadline, "the signal is never caught"
        time.sleep(0.0005)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3])
def test_sigterm_in_the_first_moments_is_a_clean_cancel(make_job, delay):
    """From the moment `python -m backend` has run its first lines (milliseconds after exec) to
    the run's own handlers and beyond, a SIGTERM is exit 3 with one cancelled error event."""
    job = make_job(width=320, height=240, num_frames=25, camera="dolly", step=0.04)
    proc = _start("run", job)
    _wait_for_handler(proc)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, (proc.returncode, out, err)
    assert "Traceback" not in err
    events = parse_events(out)
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert "SIGTERM" in events[-1]["message"]
    assert not (job / "out").exists() and not list(job.glob(".out-*"))
    assert not (job / ".run-lock").exists()


def test_the_doctor_still_ends_on_sigterm():
    proc = _start("doctor")
    _wait_for_handler(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


SLOW_NUMPY = """
import pathlib, sys, time
class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            pathlib.Path({marker!r}).write_text("importing numpy")
            time.sleep(1.0)  # a slow disk: the start-up takes a second before the runner exists
        return None
sys.meta_path.insert(0, _Slow())
"""


def test_sigterm_while_the_start_up_imports_is_a_clean_cancel(make_job, tmp_path):
    """The runner's own handlers need numpy (and more) imported first; a SIGTERM during those
    imports once killed the process silently (-15). Made deterministic by slowing numpy's import."""
    job = make_job(num_frames=3)
    site = tmp_path / "slow_site"
    site.mkdir()
    marker = tmp_path / "numpy-import-started"
    (site / "sitecustomize.py").write_text(SLOW_NUMPY.format(marker=str(marker)))
    proc = _start("run", job, extra_paths=[str(site)])
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)  # numpy is still importing: the runner is not there yet
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, (proc.returncode, out, err)
    (event,) = parse_events(out)
    assert event["event"] == "error" and event["kind"] == "cancelled" and "SIGTERM" in event["message"]


def test_a_signal_inside_a_job_reader_is_a_cancel_not_a_broken_file(make_job, monkeypatch):
    """The signal handler raises Cancelled wherever the main thread is; inside the conditions
    reader, whose broad except reports a broken file, load_context still raises Cancelled (the
    race behind a SIGTERM 0.1 s after start reported as invalid_job)."""
    from backend.cancel import CancelState
    from backend.context import load_context
    from backend.errors import Cancelled
    from blender_animate import job_files

    job = make_job()
    state = CancelState()
    real = job_files.read_npy

    def interrupted(*args, **kwargs):  # what CancelWatcher._on_signal does mid-read
        state.request("SIGTERM")
        state.raise_once()
        return real(*args, **kwargs)

    monkeypatch.setattr(job_files, "read_npy", interrupted)
    with pytest.raises(Cancelled):
        load_context(job, cancel=state)
    monkeypatch.setattr(job_files, "read_npy", real)
    assert load_context(job, cancel=CancelState()).spec.width == 64  # a job read without a cancel


def test_a_signal_while_a_kernel_loads_waits_for_the_next_check(tmp_path):
    """While backend.compiled builds or loads a kernel (numba and llvmlite must not be
    interrupted) the handler only records the request; the next check() raises it, and the
    kernel is not cached as missing."""
    import sys as _sys

    from backend import compiled
    from backend.cancel import CancelState, CancelWatcher
    from backend.errors import Cancelled

    state = CancelState()
    watcher = CancelWatcher(state, tmp_path / "cancel")
    module = "backend.output_kernel"
    compiled._LOADED.pop(module, None)

    def smoke_test(kernel):  # the signal arrives mid-build
        watcher._on_signal(signal.SIGTERM, _sys._getframe())

    kernel = compiled.load(module, smoke_test)
    compiled._LOADED.pop(module, None)  # the real smoke test next time
    if kernel is None:
        pytest.skip("numba is not installed")
    assert state.requested and not state.raised
    with pytest.raises(Cancelled):
        state.check()
    with pytest.raises(Cancelled):  # and outside the loader the handler raises at once
        CancelWatcher(CancelState(), tmp_path / "cancel")._on_signal(signal.SIGTERM, _sys._getframe())
