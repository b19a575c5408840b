"""The farm on a real local Ray cluster (127.0.0.1, two CPUs, started by the fixture): several
preview jobs, a worker killed mid-job and retried, a killed runner retried, cancelling one job, a
job still waiting, and a folder the worker does not see. The jobs are real runs of the runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from backend.farm.cli import CODE_ROOT
from backend.farm.driver import Farm
from backend.farm.jobs import load_jobs
from blender_animate.result import read_result

pytestmark = pytest.mark.slow


def run_farm(ray, dirs, on_event=None, **options):
    """Run the farm in this process; returns (exit code, events, jobs)."""
    events = []
    jobs = load_jobs(dirs)
    farm = Farm(
        ray,
        jobs,
        emit=lambda e: (events.append(e), on_event and on_event(farm, e)),
        code_root=CODE_ROOT,
        **options,
    )
    return farm.run(), events, jobs


def no_partial(job_dir, timeout=10.0):
    """True once no `.out-partial-*` folder is left (an orphaned runner may still be cleaning up)."""
    deadline = time.monotonic() + timeout
    while any(job_dir.glob(".out-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(job_dir.glob(".out-*"))


def test_the_cli_runs_several_jobs_and_prints_a_summary(ray_cluster, preview_job):
    dirs = [preview_job(f"shot{i}") for i in range(3)]
    address = ray_cluster.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "farm", "run", *map(str, dirs), "--address", address],
        cwd=CODE_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    for d in dirs:
        mine = [e for e in events if e.get("job") == str(d)]
        names = [e["event"] for e in mine]
        assert names[0] == "submitted" and "attempt" in names and "started" in names
        assert names[-2:] == ["done", "job_end"] and all(e.get("attempt") in (1, None) for e in mine)
        assert read_result(d).num_frames == 5
    summary = events[-1]
    assert summary["event"] == "summary" and summary["counts"] == {"done": 3, "failed": 0, "cancelled": 0}
    assert "3 done, 0 failed, 0 cancelled of 3 jobs" in proc.stderr


def test_a_worker_killed_mid_job_is_retried_and_the_job_completes(ray_cluster, preview_job):
    job_dir = preview_job("shot", size="large")
    killed = []

    def on_event(farm, event):
        # Freeze the runner mid-job, kill its Ray worker, let the runner go on (it notices the
        # worker is gone and cancels itself; the retry waits for it).
        if event["event"] == "progress" and event["attempt"] == 1 and not killed:
            job = farm.jobs[0]
            os.kill(job.runner_pid, signal.SIGSTOP)
            os.kill(job.worker_pid, signal.SIGKILL)
            killed.append(job.worker_pid)
            os.kill(job.runner_pid, signal.SIGCONT)

    code, events, jobs = run_farm(ray_cluster, [job_dir], on_event)
    assert killed and code == 0, events[-1]
    retry = next(e for e in events if e["event"] == "retry")
    assert retry["reason"] == "worker_died" and retry["attempt"] == 2
    attempts = [e for e in events if e["event"] == "attempt"]
    assert [a["attempt"] for a in attempts] == [1, 2] and attempts[1]["worker_pid"] != killed[0]
    assert jobs[0].state == "done" and jobs[0].attempts == 2
    assert read_result(job_dir).num_frames == 33
    assert no_partial(job_dir)


def test_a_killed_runner_is_retried(ray_cluster, preview_job):
    job_dir = preview_job("shot", size="large")

    killed = []

    def on_event(farm, event):
        # At the first progress of the first attempt (the preview is done within a second or two).
        if event["event"] == "progress" and event["attempt"] == 1 and not killed:
            killed.append(farm.jobs[0].runner_pid)
            os.kill(killed[0], signal.SIGKILL)

    code, events, jobs = run_farm(ray_cluster, [job_dir], on_event)
    assert code == 0
    retry = next(e for e in events if e["event"] == "retry")
    assert retry["reason"] == "crashed" and "signal 9" in retry["message"]
    assert jobs[0].attempts == 2 and read_result(job_dir).num_frames == 33


def test_a_cancelled_job_leaves_no_out_and_the_others_finish(ray_cluster, preview_job):
    keep, stop = preview_job("keep"), preview_job("stop", size="large")

    def on_event(farm, event):
        if event["event"] == "started" and event["job"] == str(stop):
            farm.cancel(stop)

    code, events, jobs = run_farm(ray_cluster, [keep, stop], on_event)
    assert code == 3
    assert [j.state for j in jobs] == ["done", "cancelled"]
    end = next(e for e in events if e["event"] == "error" and e["job"] == str(stop))
    assert end["kind"] == "cancelled"
    assert read_result(keep).num_frames == 5
    assert not (stop / "out").exists() and no_partial(stop)


def test_a_job_cancelled_while_waiting_never_starts(ray_cluster, preview_job):
    first, waiting = preview_job("first", size="large"), preview_job("waiting")

    def on_event(farm, event):  # both take the cluster's two CPUs, so `waiting` waits
        if event["event"] == "started" and event["job"] == str(first):
            (waiting / "cancel").touch()  # as `python -m backend farm cancel` does

    code, events, jobs = run_farm(ray_cluster, [first, waiting], on_event, cpus=2)
    assert code == 3 and [j.state for j in jobs] == ["done", "cancelled"]
    assert not [e for e in events if e["event"] == "attempt" and e["job"] == str(waiting)]
    assert not (waiting / "out").exists()


def test_a_folder_the_worker_sees_differently_is_a_clear_error(ray_cluster, preview_job):
    job_dir = preview_job("shot")
    jobs = load_jobs([job_dir])
    spec = json.loads((job_dir / "job.json").read_text())
    (job_dir / "job.json").write_text(json.dumps({**spec, "seed": 99}))  # what the worker will see
    events = []
    farm = Farm(ray_cluster, jobs, emit=events.append, code_root=CODE_ROOT)
    assert farm.run() == 1
    error = next(e for e in events if e["event"] == "error")
    assert error["kind"] == "not_shared" and "is not the job.json that was submitted" in error["message"]
    assert "copies nothing" in error["hint"]
    assert jobs[0].attempts == 1 and not (job_dir / "out").exists()


def test_a_gpu_job_on_a_cluster_without_gpus_fails_at_once(ray_cluster, preview_job, tmp_path):
    from tests.backend.jobs import write_job

    job_dir = write_job(tmp_path / "gpu", mode="guided")
    code, events, jobs = run_farm(ray_cluster, [job_dir])
    assert code == 1 and jobs[0].kind == "no_gpu" and jobs[0].attempts == 0
    assert "--wait-for-resources" in jobs[0].message
