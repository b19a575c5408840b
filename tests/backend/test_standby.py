"""`python -m backend standby` (backend/standby.py), the real process: ready line, one job from
stdin run exactly as `run` runs it, and a quiet exit when no job comes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.backend.jobs import ROOT, backend_env, parse_events, run_backend
from tests.jobfiles import make_job


def start_standby(*args: str, warmed=("preview",), reserved_mb=0, env=None) -> subprocess.Popen:
    """`python -m backend standby *args`, once its ready line (checked) has come."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "standby", *args],
        cwd=ROOT,
        env=env or backend_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ready = json.loads(proc.stdout.readline())
    expected = {"event": "ready", "pid": proc.pid, "warm": list(warmed), "reserved_mb": reserved_mb}
    assert ready == expected
    return proc


def give_job(proc: subprocess.Popen, line: bytes) -> tuple[list[dict], int]:
    proc.stdin.write(line)
    proc.stdin.close()
    out = proc.stdout.read().decode()
    proc.stderr.close()
    return parse_events(out), proc.wait(timeout=60)


def test_a_standby_runs_its_job_as_run_does(tmp_path):
    """The job from stdin: the same events (started with the standby's pid, done), exit code and
    output files as a cold `run` of the same job (flow.npz bit for bit); its stderr appended to the
    job's log."""
    warm, cold = make_job(tmp_path / "warm"), make_job(tmp_path / "cold")
    proc = start_standby()
    (warm / "generator.log").write_text("client's line\n")  # the client creates it; the standby appends
    events, code = give_job(proc, (json.dumps({"job": str(warm)}) + "\n").encode())
    assert code == 0
    assert events[0]["event"] == "started" and events[0]["pid"] == proc.pid
    assert events[-1]["event"] == "done" and events[-1]["outputs"]["flow"] == "out/flow.npz"
    ran = run_backend("run", cold)
    assert ran.returncode == 0, ran.stderr
    assert [e["event"] for e in parse_events(ran.stdout)] == [e["event"] for e in events]
    assert (warm / "out" / "flow.npz").read_bytes() == (cold / "out" / "flow.npz").read_bytes()
    assert sorted(p.name for p in (warm / "out").iterdir()) == sorted(
        p.name for p in (cold / "out").iterdir()
    )
    assert (warm / "generator.log").read_text().startswith("client's line\n")


def test_a_job_folder_that_does_not_exist_is_the_runs_error(tmp_path):
    events, code = give_job(start_standby(), (json.dumps({"job": str(tmp_path / "none")}) + "\n").encode())
    assert code == 2
    assert [e["event"] for e in events] == ["error"] and events[0]["kind"] == "invalid_job"


def test_the_job_line_sets_the_jobs_own_variables_only(tmp_path):
    """ "env" in the job line sets JOB_ENV's variables for that run (PNG frames beside video.mp4,
    as a retimed import asks); other names are ignored."""
    with_png, without = make_job(tmp_path / "png"), make_job(tmp_path / "plain")
    line = {"job": str(with_png), "env": {"ANIMATE_ANYTHING_PNG": "1", "ANIMATE_ANYTHING_THREADS": "x"}}
    events, code = give_job(start_standby(), (json.dumps(line) + "\n").encode())
    assert code == 0 and events[-1]["outputs"]["frames"] == "out/frames"
    assert len(list((with_png / "out" / "frames").glob("*.png"))) == 9
    line = {"job": str(without), "env": {"PATH": "/nowhere"}}
    events, code = give_job(start_standby(), (json.dumps(line) + "\n").encode())
    assert code == 0 and events[-1]["outputs"]["frames"] is None


@pytest.mark.parametrize("line", [b"", b"not json\n", b'{"job": 3}\n', b'["a job"]\n'])
def test_no_job_ends_it_quietly(line):
    """The end of stdin (Blender gone) or a line that is not a job: exit 0, no event."""
    events, code = give_job(start_standby(), line)
    assert (events, code) == ([], 0)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_signal_while_waiting_ends_it_at_once():
    proc = start_standby("--watch-parent")
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0 and time.monotonic() - t < 2
    assert proc.stdout.read() == b""
    proc.stdin.close(), proc.stdout.close(), proc.stderr.close()


def test_a_cancel_file_cancels_a_warm_run(tmp_path):
    """A job whose folder already holds `cancel` ends as a cold run would: cancelled, exit 3."""
    job = make_job(tmp_path / "job")
    (job / "cancel").write_text("cancelled\n")
    events, code = give_job(start_standby(), (json.dumps({"job": str(job)}) + "\n").encode())
    assert code == 3 and events[-1]["kind"] == "cancelled"
    assert not (job / "out").exists()


def test_the_warm_up_messages_lead_the_jobs_log(tmp_path):
    """What the warm-up printed (a kernel that did not build) reaches JOB/generator.log, after what
    the client wrote there and before the run's own stderr."""
    (tmp_path / "generator.log").write_text("client\n")
    code = (
        "import sys; from pathlib import Path; from backend.standby import log_to_job; "
        f"log_to_job(Path({str(tmp_path)!r}), 'warning: early\\n'); print('run', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=backend_env(), capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == ""
    assert (tmp_path / "generator.log").read_text() == "client\nwarning: early\nrun\n"


def test_warm_guided_imports_the_model_libraries_first(tmp_path):
    """--warm guided: torch, diffusers and the pipelines imported before the ready line (where
    they are installed; else a preview warm-up, which the ready line says), then any job runs."""
    import importlib.util

    have = all(importlib.util.find_spec(m) for m in ("torch", "diffusers", "transformers"))
    proc = start_standby("--warm", "guided", warmed=("preview", "guided") if have else ("preview",))
    maps = Path(f"/proc/{proc.pid}/maps")
    if have and maps.exists():
        assert "libtorch" in maps.read_text()  # loaded in the waiting process
    events, code = give_job(proc, (json.dumps({"job": str(make_job(tmp_path / "job"))}) + "\n").encode())
    assert code == 0 and events[-1]["event"] == "done"


def _minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings, /proc")
def test_a_standby_reserves_heap_for_its_frame_size_and_the_job_faults_less(tmp_path):
    """--frame-size WxH grows the waiting standby's heap by reserve_size (freed memory the
    warm-up left counts); the job then takes its memory from it: far fewer pages faulted in than
    on a standby without, the same outputs. With glibc's default malloc (a freed block goes back)
    nothing is reserved."""
    from backend.standby import reserve_size

    W, H = 640, 480
    expected = round(reserve_size(W, H, 2) / 2**20)
    assert expected == round(W * H * (32 + 2 * 128) / 2**20) > 50
    faults = {}
    for name, args, reserved in (("plain", (), 0), ("reserved", ("--frame-size", f"{W}x{H}"), expected)):
        job = make_job(tmp_path / name, width=W, height=H, num_frames=9)
        proc = start_standby(*args, reserved_mb=reserved)
        rss_kb = int(
            next(
                x for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if x.startswith("VmRSS")
            ).split()[1]
        )
        faults[name] = (_minor_faults(proc.pid), rss_kb)
        proc.stdin.write((json.dumps({"job": str(job)}) + "\n").encode())
        proc.stdin.close()
        out = proc.stdout.read().decode()
        proc.stderr.close()
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and parse_events(out)[-1]["event"] == "done"
        faults[name] = (usage.ru_minflt - faults[name][0], faults[name][1])
    (job_faults, rss), (reserved_faults, reserved_rss) = faults["plain"], faults["reserved"]
    assert reserved_faults < 0.5 * job_faults, faults
    assert reserved_rss + reserved_faults * 4 >= rss + job_faults * 4 - 4096  # kB: the same memory, earlier
    assert (tmp_path / "plain/out/flow.npz").read_bytes() == (tmp_path / "reserved/out/flow.npz").read_bytes()
    env = backend_env() | {"ANIMATE_ANYTHING_MALLOC": "default"}
    proc = start_standby("--frame-size", f"{W}x{H}", env=env)  # reserved_mb 0: checked
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings, /proc")
def test_a_reserve_at_its_cap_stays_in_the_process():
    """The largest reserve (RESERVE_CAP, 1 GiB: 4K on 2 threads) is resident while the standby
    waits, as reserved_mb says (glibc's trimming handed a freed block of 1 GiB straight back)."""
    from backend.standby import RESERVE_CAP, reserve_size

    expected = reserve_size(3840, 2160, 2)
    if expected < RESERVE_CAP:
        pytest.skip("less than 8 GiB of memory: the reserve is capped lower")
    proc = start_standby("--frame-size", "3840x2160", reserved_mb=RESERVE_CAP // 2**20)
    status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
    rss_kb = int(next(x for x in status if x.startswith("VmRSS")).split()[1])
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    proc.stdout.close()
    proc.stderr.close()
    assert rss_kb * 1024 > RESERVE_CAP, rss_kb


def test_a_bad_frame_size_is_refused_by_name():
    ran = run_backend("standby", "--frame-size", "720")
    assert ran.returncode == 2 and "--frame-size: '720' is not WIDTHxHEIGHT" in ran.stderr
