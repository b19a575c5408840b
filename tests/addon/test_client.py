"""GeneratorProcess against the real generator process (`python -m backend run JOB`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_animate.addon.client import GeneratorProcess, extension_site_packages
from tests.jobfiles import make_job

ROOT = Path(__file__).resolve().parents[2]


def run_to_end(proc: GeneratorProcess, timeout=60.0, on_event=None) -> list[dict]:
    events = []
    deadline = time.monotonic() + timeout
    while not proc.finished:
        assert time.monotonic() < deadline, f"no terminal event after {timeout} s: {events}"
        for event in proc.poll():
            events.append(event)
            if on_event is not None:
                on_event(proc, event)
        time.sleep(0.02)
    return events


def terminal(events):
    ends = [e for e in events if e["event"] in ("done", "error")]
    assert len(ends) == 1, f"expected exactly one done/error event, got {ends}"
    assert events[-1] is ends[0], "the terminal event must be the last one"
    return ends[0]


def assert_group_gone(proc: GeneratorProcess):
    """No process of the generator's process group is left (no orphans)."""
    if os.name != "posix":
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("processes of the generator's group are still alive")


def assert_no_output(job: Path):
    assert not (job / "out").exists(), "a failed run must leave no out/ folder"
    leftovers = [p.name for p in job.iterdir() if p.name.startswith(".out-partial-")]
    assert leftovers == [], f"partial output left behind: {leftovers}"


def test_a_preview_run_streams_events_and_finishes(tmp_path):
    job = make_job(tmp_path / "job")
    proc = GeneratorProcess(job).start()
    assert proc.proc is not None and proc.running
    events = run_to_end(proc)
    end = terminal(events)
    assert end["event"] == "done", end
    assert events[0]["event"] == "started" and events[0]["pid"] == proc.proc.pid
    assert (proc.mode, proc.size) == ("preview", (64, 48))  # what the next standby is prepared for
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(0 <= e["step"] <= e["total"] for e in progress)
    assert proc.proc.wait(timeout=10) == 0 and proc.returncode == 0
    result = json.loads((job / end["outputs"]["result"]).read_text())
    assert result["num_frames"] == 9
    from blender_animate.result import read_result

    assert read_result(job).num_frames == 9  # the mp4, or the 9 PNG frames without PyAV: checked
    assert proc.log_path.is_file()
    assert proc.poll() == [], "nothing after the terminal event"
    assert_group_gone(proc)


def test_poll_never_blocks(tmp_path):
    job = make_job(tmp_path / "job")
    proc = GeneratorProcess(job).start()
    worst = 0.0
    while not proc.finished:
        t = time.perf_counter()
        proc.poll()
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.01)
    assert worst < 1.0, f"poll() blocked for {worst:.3f} s"


def test_cancel_stops_the_run_and_leaves_no_output(tmp_path):
    job = make_job(tmp_path / "job", width=256, height=192, num_frames=33)
    proc = GeneratorProcess(job).start()

    def cancel_on_start(p, event):
        if event["event"] == "started":
            p.cancel()

    t0 = time.monotonic()
    events = run_to_end(proc, on_event=cancel_on_start)
    end = terminal(events)
    assert end["event"] == "error" and end["kind"] == "cancelled", end
    assert time.monotonic() - t0 < 15
    assert proc.proc.wait(timeout=10) in (3, -signal.SIGTERM, -signal.SIGKILL)
    assert_no_output(job)
    assert_group_gone(proc)


def test_a_stubborn_process_is_terminated_then_killed(tmp_path):
    """cancel() escalates: cancel file, SIGTERM, SIGKILL. A process that ignores all but SIGKILL
    (here: the generator stopped with SIGSTOP, so it cannot react) still ends, as cancelled."""
    job = make_job(tmp_path / "job", width=256, height=192, num_frames=33)
    proc = GeneratorProcess(job, term_after=0.2, kill_after=0.6).start()
    while not any(e["event"] == "started" for e in proc.poll()):
        time.sleep(0.02)
    os.killpg(proc.proc.pid, signal.SIGSTOP)
    proc.cancel()
    end = terminal(run_to_end(proc, timeout=10))
    assert end["kind"] == "cancelled"
    assert proc.returncode == -signal.SIGKILL
    assert not (job / "out" / "result.json").exists()
    assert_group_gone(proc)


def test_a_generator_killed_mid_run_gives_a_clear_error(tmp_path):
    job = make_job(tmp_path / "job", width=256, height=192, num_frames=33)
    proc = GeneratorProcess(job).start()
    killed = []

    def kill_on_start(p, event):
        if event["event"] == "started" and not killed:
            os.kill(p.proc.pid, signal.SIGKILL)
            killed.append(True)

    end = terminal(run_to_end(proc, on_event=kill_on_start))
    assert end["kind"] == "crashed"
    assert "SIGKILL" in end["message"] and "log" in end["hint"]
    assert not (job / "out" / "result.json").exists()
    assert_group_gone(proc)


def test_a_corrupted_job_is_refused(tmp_path):
    job = make_job(tmp_path / "job")
    (job / "job.json").write_text('{"schema_version": 1, "mode": "preview", "width": ')
    proc = GeneratorProcess(job).start()
    end = terminal(run_to_end(proc))
    assert end["event"] == "error" and end["kind"] == "invalid_job"
    assert "job.json" in end["message"]
    assert proc.proc.wait(timeout=10) == 2
    assert_no_output(job)


def test_a_missing_interpreter_is_an_error_event_not_an_exception(tmp_path):
    job = make_job(tmp_path / "job")
    proc = GeneratorProcess(job, python=str(tmp_path / "no" / "python3")).start()
    events = proc.poll()
    end = terminal(events)
    assert end["kind"] == "missing_interpreter"
    assert "does not exist" in end["message"] and "Preferences" in end["hint"]
    assert proc.finished and proc.proc is None


def test_a_directory_as_interpreter_is_refused(tmp_path):
    job = make_job(tmp_path / "job")
    end = terminal(GeneratorProcess(job, python=str(tmp_path)).start().poll())
    assert end["kind"] == "missing_interpreter" and "not an executable" in end["message"]


def _python_without_numpy(tmp_path) -> str:
    """A fresh venv of the system Python, without pip and so without numpy or Pillow."""
    base = next((p for p in ("/usr/bin/python3.11", "/usr/bin/python3") if Path(p).exists()), None)
    if base is None:
        pytest.skip("no system python3 to make a bare venv from")
    venv = tmp_path / "bare"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import numpy"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system Python's venv sees numpy")
    return str(python)


def test_an_interpreter_without_numpy_says_what_is_missing(tmp_path):
    job = make_job(tmp_path / "job")
    python = _python_without_numpy(tmp_path)
    proc = GeneratorProcess(job, python=python).start()
    end = terminal(run_to_end(proc))
    assert end["kind"] == "missing_dependency", end
    assert "numpy" in end["message"]
    assert end["hint"]
    assert_no_output(job)


def test_extension_site_packages_finds_blenders_wheel_folder():
    paths = [
        "/usr/lib/python3.11",
        "/home/u/.config/blender/5.0/extensions/.local/lib/python3.11/site-packages",
        "/home/u/.config/blender/5.0/scripts/addons",
        "/opt/venv/lib/python3.11/site-packages",
    ]
    assert extension_site_packages(paths) == [paths[1]]


def test_the_child_gets_the_extension_root_and_extra_paths_on_pythonpath(tmp_path):
    job = make_job(tmp_path / "job")
    extra = tmp_path / "site"
    proc = GeneratorProcess(job, extra_paths=[extra])
    env = proc.environment()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), str(extra)]
    assert proc.command()[:4] == [sys.executable, "-m", "backend", "run"]


PARENT = """
import sys, time
from blender_animate.addon.client import GeneratorProcess
proc = GeneratorProcess(sys.argv[1], args=["--watch-parent"]).start()
while not any(e["event"] == "started" for e in proc.poll()):
    time.sleep(0.02)
print(proc.proc.pid, flush=True)
time.sleep(120)
"""


def test_a_generator_whose_blender_dies_stops_by_itself(tmp_path):
    """Blender crashing (SIGKILL, no clean-up) must not leave the generator running: generate.py
    passes --watch-parent, and the generator cancels when its parent goes away."""
    job = make_job(tmp_path / "job", width=256, height=192, num_frames=49)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(job)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the generator outlived its parent by 15 s")
    assert not (job / "out" / "result.json").exists()


def test_the_bundled_pillow_wheel_reaches_a_python_that_has_only_numpy(tmp_path):
    """Zero install: Blender's Python has numpy but no Pillow; the extension's Pillow wheel is
    extracted into a site-packages folder that reaches the generator through extra_paths."""
    import zipfile

    wheel = next(iter(sorted((ROOT / "wheels").glob("pillow-*manylinux*x86_64*.whl"))), None)
    if wheel is None or sys.platform != "linux":
        pytest.skip("no Linux Pillow wheel in wheels/ (scripts/fetch_wheels.py)")
    base = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "blender_like"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    numpy_only = tmp_path / "numpy_only"  # like Blender's bundled numpy, nothing else
    numpy_only.mkdir()
    import numpy

    site = Path(numpy.__file__).parent.parent
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (numpy_only / name).symlink_to(site / name)
    extension_site = tmp_path / "extensions" / ".local" / "lib" / "python3.11" / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(extension_site)
    probe = subprocess.run(
        [python, "-c", "import PIL"], capture_output=True, env={**os.environ, "PYTHONPATH": str(numpy_only)}
    )
    assert probe.returncode != 0, "the test Python must not see Pillow by itself"
    assert extension_site_packages([str(extension_site)]) == [str(extension_site)]

    without = make_job(tmp_path / "without")
    end = GeneratorProcess(without, python, extra_paths=[numpy_only]).start().wait(timeout=60)
    assert end["kind"] == "missing_dependency" and "Pillow" in end["message"], end

    job = make_job(tmp_path / "with")
    end = GeneratorProcess(job, python, extra_paths=[numpy_only, extension_site]).start().wait(timeout=60)
    assert end["event"] == "done", end
    result = json.loads((job / "out" / "result.json").read_text())
    assert result["generator"]["packages"]["Pillow"] == wheel.name.split("-")[1]
    assert len(list((job / "out" / "frames").glob("*.png"))) == 9
