"""Several ranks for one video (backend/parallel_run.py, backend/cp_rank.py): two gloo ranks on CPU
through a real `python -m backend run JOB` with ANIMATE_ANYTHING_CP=2 give the frames of one
process; the events stay one JSON stream; a cancel file mid-run and a killed rank end the run the
documented way. Each torchrun start costs several seconds, so the runs are few."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend.errors import JobFailure
from backend.parallel_run import ENV, ranks_for

from .conftest import F

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def _ctx(mode="guided", family="wan", device="auto"):
    return SimpleNamespace(spec=SimpleNamespace(mode=mode, model_family=family), requested_device=device)


def test_ranks_for_env_and_gpu_count():
    two, four = (lambda: 2), (lambda: 4)
    assert ranks_for(_ctx(), {}, two) == 2  # automatic: several GPUs and a plan
    assert ranks_for(_ctx(), {}, lambda: 1) == 1
    assert ranks_for(_ctx(family="cogvideox"), {}, four) == 1  # no plan in diffusers
    assert ranks_for(_ctx(mode="preview"), {}, four) == 1
    assert ranks_for(_ctx(device="cpu"), {}, four) == 1
    assert ranks_for(_ctx(), {ENV: "0"}, four) == 1 and ranks_for(_ctx(), {ENV: "1"}, four) == 1
    assert ranks_for(_ctx(device="cpu"), {ENV: "3"}, lambda: 0) == 3  # forced, CPU allowed (gloo)
    for env, ctx in (
        ({ENV: "x"}, _ctx()),
        ({ENV: "2"}, _ctx(family="cogvideox")),
        ({ENV: "8"}, _ctx(device="cuda")),
    ):
        with pytest.raises(JobFailure) as err:
            ranks_for(ctx, env, four)
        assert err.value.kind == "invalid_job" and ENV in err.value.message + err.value.hint


def test_doctor_says_whether_several_gpus_are_used():
    from backend.parallel_run import doctor_line

    assert "2 ranks" in doctor_line(2, {}) and "not used (one GPU" in doctor_line(1, {})
    assert "is off" in doctor_line(4, {ENV: "0"}) and "not a rank count" in doctor_line(4, {ENV: "two"})


@pytest.fixture
def one_rank_group(tmp_path):
    """A 1-rank gloo process group (check_plan agrees with the other ranks by an all-reduce)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_token_and_plan_checks(wan21_pipe, one_rank_group):
    from backend.runtime import context_parallel as cp
    from backend.runtime.memory import MemoryPlan

    # 9 frames of 32x32: 3 latent frames of 4x4 latent pixels in 2x2 patches = 12 tokens.
    assert cp.wan_tokens(wan21_pipe, 32, 32, 9) == 12
    cp.check_tokens(12, 4)
    with pytest.raises(JobFailure, match="12 latent tokens"):
        cp.check_tokens(12, 5)
    cp.check_plan(MemoryPlan("cuda", "bf16", "none", False, False, 0))
    for offload, fp8 in (("group", False), ("none", True)):
        with pytest.raises(JobFailure) as err:
            cp.check_plan(MemoryPlan("cuda", "bf16", offload, False, False, 0, fp8=fp8))
        assert err.value.kind == "invalid_job" and ENV in err.value.hint
        # Ranks the generator chose itself hand such a job back to one process instead.
        with pytest.raises(cp.NeedsOneProcess, match="offload 'group'|fp8 weights"):
            cp.check_plan(MemoryPlan("cuda", "bf16", offload, False, False, 0, fp8=fp8), automatic=True)


def test_a_handed_back_job_is_not_forwarded_and_runs_in_one_process():
    from backend.parallel_run import _forward

    class Seen:
        def __init__(self):
            self.events = []

        def emit(self, name, **fields):
            self.events.append(name)

    seen = Seen()
    line = json.dumps({"event": "one_process", "reason": "the memory plan needs offload 'group'"}).encode()
    assert _forward(line, seen) == ("one_process", "the memory plan needs offload 'group'", "")
    assert _forward(b'{"event": "progress", "stage": "load"}', seen) is None
    assert seen.events == ["progress"]


def _job(path: Path, ckpt, steps: int) -> Path:
    from tests.backend.jobs import write_job

    return write_job(
        path,
        width=32,
        height=32,
        num_frames=F,
        mode="guided",
        model_family="wan",
        model=str(ckpt),
        steps=steps,
        prompt="a red cat",
        guidance_scale=5.0,
        device="cpu",
        camera="pan",
        step=0.05,
        fps=16.0,
    )


def _env(tmp_path: Path, ranks: int) -> dict:
    from tests.backend.jobs import backend_env

    env = backend_env()
    env.update(ANIMATE_ANYTHING_PNG="1", ANIMATE_ANYTHING_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    env[ENV] = str(ranks)
    return env


def _start(job: Path, env: dict) -> subprocess.Popen:
    from tests.backend.jobs import ROOT

    return subprocess.Popen(
        [sys.executable, "-m", "backend", "run", str(job)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _frames(job: Path) -> np.ndarray:
    from PIL import Image

    paths = sorted((job / "out" / "frames").glob("*.png"))
    assert len(paths) == F
    return np.stack([np.asarray(Image.open(p)) for p in paths])


def _ranks_alive(job: Path) -> list[int]:
    """Pids of backend.cp_rank processes of this job (from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"backend.cp_rank" in cmd and str(job).encode() in cmd:
            pids.append(int(proc.name))
    return pids


def _rank_pid(job: Path, rank: int) -> int | None:
    for pid in _ranks_alive(job):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return pid
    return None


def test_two_gloo_ranks_equal_one_process(wan21_ckpt, tmp_path):
    steps = 4
    results = {}
    for ranks in (1, 2):
        job = _job(tmp_path / f"job{ranks}", wan21_ckpt, steps)
        proc = subprocess.run(
            [sys.executable, "-m", "backend", "run", str(job)],
            cwd=Path(__file__).resolve().parents[2],
            env=_env(tmp_path, ranks),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line one event
        names = [e["event"] for e in events]
        assert names[0] == "started" and names[-1] == "done" and names.count("done") == 1
        assert [e["step"] for e in events if e.get("stage") == "denoise"] == list(range(1, steps + 1))
        info = json.loads((job / "out" / "result.json").read_text())["info"]
        results[ranks] = (_frames(job), info["context_parallel"])
    assert results[1][1] is None
    assert results[2][1] == {"kind": "ulysses", "ranks": 2, "backend": "gloo", "modules": ["transformer"]}
    assert np.array_equal(results[1][0], results[2][0])
    assert not _ranks_alive(tmp_path / "job2")

    # A rank's failure is the run's: 3 ranks cannot share the tiny model's 2 attention heads.
    job = _job(tmp_path / "job3", wan21_ckpt, steps)
    proc = subprocess.run(
        [sys.executable, "-m", "backend", "run", str(job)],
        cwd=Path(__file__).resolve().parents[2],
        env=_env(tmp_path, 3),
        capture_output=True,
        text=True,
        timeout=240,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert [e["event"] for e in events].count("error") == 1 and events[-1]["kind"] == "invalid_job"
    assert "2 attention heads" in events[-1]["message"] and not (job / "out").exists()


def _wait_for_denoise(proc: subprocess.Popen, timeout: float = 180) -> list[dict]:
    events, t0 = [], time.monotonic()
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1].get("stage") == "denoise":
            return events
        assert time.monotonic() - t0 < timeout, events
    raise AssertionError(f"no denoise progress: {events}\n{proc.stderr.read()[-4000:]}")


def test_cancel_file_killed_rank_and_killed_runner(wan21_ckpt, tmp_path):
    # Enough steps that the run is still denoising when the cancel arrives.
    job = _job(tmp_path / "cancel", wan21_ckpt, steps=400)
    proc = _start(job, _env(tmp_path, 2))
    try:
        events = _wait_for_denoise(proc)
        t = time.monotonic()
        (job / "cancel").write_text("")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    events += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 3, err[-4000:]
    assert time.monotonic() - t < 10
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert [e["event"] for e in events].count("error") == 1
    assert not (job / "out").exists() and not list(job.glob(".out-partial-*"))
    assert not _ranks_alive(job)

    job = _job(tmp_path / "kill", wan21_ckpt, steps=400)
    proc = _start(job, _env(tmp_path, 2))
    try:
        events = _wait_for_denoise(proc)
        pid = _rank_pid(job, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    events += [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 1, err[-4000:]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "internal", events[-1]
    assert "rank" in events[-1]["message"] and ENV in events[-1]["hint"]
    assert not (job / "out").exists()
    assert not _ranks_alive(job)

    # The runner killed (no cleanup of its own): the ranks notice and end, nothing is left running.
    job = _job(tmp_path / "runner", wan21_ckpt, steps=400)
    proc = _start(job, _env(tmp_path, 2))
    try:
        _wait_for_denoise(proc)
        assert _ranks_alive(job)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    t = time.monotonic()
    while _ranks_alive(job) and time.monotonic() - t < 15:
        time.sleep(0.1)
    assert not _ranks_alive(job)
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
