"""out/ is swapped in at the end: the previous complete out/ survives every failed re-run (invalid
job, a failing mode, a cancel, a full disk, a read-only folder), and an `out` that is a stray file
or link is replaced without leaving an `.out-old-*` behind (issue 10, cases 2, 4 and 7)."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import backend.modes
from backend.events import Events
from backend.runner import run
from tests.backend.jobs import ROOT, backend_env, parse_events, run_backend


def _snapshot(folder):
    """Every file under folder: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _in_process(job):
    buf = io.BytesIO()
    code = run(job, events=Events(buf))
    return code, [json.loads(line) for line in buf.getvalue().decode().splitlines()]


@pytest.fixture
def finished_job(make_job):
    """A job that ran once: (job, snapshot of its out/)."""
    job = make_job(num_frames=3)
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    return job, _snapshot(job / "out")


def _assert_kept(job, before):
    assert _snapshot(job / "out") == before
    assert sorted(p.name for p in job.glob(".out-*")) == []


def test_a_rerun_that_fails_validation_keeps_the_previous_out(finished_job):
    job, before = finished_job
    with np.load(job / "conditions.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["K"][:, 0, 0] = 0.0  # fx = 0: once found only after `started`, after out/ was deleted
    np.savez(job / "conditions.npz", **arrays)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)
    assert error["kind"] == "invalid_job" and "focal length <= 0" in error["message"]
    _assert_kept(job, before)


@pytest.mark.parametrize(
    "exc, kind",
    [
        (RuntimeError("a bug in the mode"), "internal"),
        (MemoryError(), "out_of_memory"),
        (OSError(errno.ENOSPC, "No space left on device", "/job/.out-partial-1/video.mp4"), "cannot_write"),
    ],
)
def test_a_rerun_whose_mode_fails_keeps_the_previous_out(finished_job, monkeypatch, exc, kind):
    job, before = finished_job

    def generate(ctx):
        raise exc

    monkeypatch.setattr(backend.modes, "load_mode", lambda name: types.SimpleNamespace(generate=generate))
    code, events = _in_process(job)
    assert code == 1 and events[-1]["kind"] == kind
    _assert_kept(job, before)


def test_a_cancelled_rerun_keeps_the_previous_out(finished_job):
    job, before = finished_job
    (job / "cancel").write_text("")
    assert run_backend("run", job).returncode == 3
    _assert_kept(job, before)


def test_a_full_disk_while_writing_is_cannot_write_and_keeps_out(finished_job, monkeypatch):
    """ENOSPC while out/result.json is written (simulated): its own kind, the folder named, what
    to do, and the previous out/ as it was."""
    from blender_animate import result

    job, before = finished_job

    def full(folder, data, default=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "result.json"))

    monkeypatch.setattr(result, "write_result", full)
    code, events = _in_process(job)
    assert code == 1
    error = events[-1]
    assert error["kind"] == "cannot_write"
    assert error["message"].startswith("the disk is full") and str(job) in error["message"]
    assert "Free some disk space" in error["hint"]
    _assert_kept(job, before)


def test_a_read_only_folder_is_cannot_write_before_anything(finished_job, monkeypatch):
    """EROFS when the run takes its lock (simulated; a real read-only mount is tested below)."""
    job, before = finished_job
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".run-lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, events = _in_process(job)
    assert code == 1 and [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "cannot_write"
    assert f"the folder cannot be written: {job} is on a read-only file system" in events[0]["message"]
    _assert_kept(job, before)


@pytest.mark.parametrize("kind", ["file", "link to a folder", "dangling link"])
def test_an_out_that_is_a_file_or_link_is_replaced_cleanly(make_job, tmp_path, kind):
    job = make_job(num_frames=3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the generator's")
    if kind == "file":
        (job / "out").write_text("a stray file")
    elif kind == "link to a folder":
        (job / "out").symlink_to(elsewhere, target_is_directory=True)
    else:
        (job / "out").symlink_to(tmp_path / "nowhere")
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    assert (job / "out").is_dir() and not (job / "out").is_symlink()
    assert (job / "out" / "result.json").is_file()
    assert sorted(p.name for p in job.glob(".out-*")) == []  # no .out-old-<pid> left behind
    assert (elsewhere / "keep.txt").read_text() == "not the generator's"  # a link's target is untouched


def test_leftovers_of_dead_runs_are_removed_and_an_interrupted_swap_is_undone(finished_job):
    """A run killed between the two renames of its swap left the previous out/ as .out-old-<pid>:
    the next run puts it back first, so even a failing next run loses nothing."""
    job, before = finished_job
    os.replace(job / "out", job / ".out-old-999999")
    (job / ".out-partial-999999").mkdir()
    (job / ".out-old-999998").write_text("a stray file")
    (job / "job.json").write_text("{ broken")
    r = run_backend("run", job)
    assert r.returncode == 2
    _assert_kept(job, before)


def test_the_swap_puts_the_previous_out_back_when_the_rename_fails(tmp_path, monkeypatch):
    from backend import job_folder

    job = tmp_path / "job"
    (job / "out").mkdir(parents=True)
    (job / "out" / "result.json").write_text("old")
    partial = job / ".out-partial-1"
    partial.mkdir()
    real_replace = os.replace

    def failing(src, dst):
        if str(src) == str(partial):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        job_folder.swap_in(partial, job)
    assert (job / "out" / "result.json").read_text() == "old"


# ----------------------------------------------------------------------------------------------
# A real full disk and a real read-only file system (a tmpfs in a private mount namespace)

_UNSHARE = shutil.which("unshare")


def _can_mount() -> bool:
    if _UNSHARE is None or sys.platform != "linux":
        return False
    probe = "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"
    r = subprocess.run([_UNSHARE, "-rm", "sh", "-c", probe], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs unshare and a private tmpfs mount")
def test_a_real_full_disk_and_read_only_folder(make_job, tmp_path):
    job = make_job(num_frames=5)
    results = tmp_path / "results"
    results.mkdir()
    script = textwrap.dedent(
        """
        set -u
        MNT=$(mktemp -d)
        mount -t tmpfs -o size=400k tmpfs "$MNT"
        cp -r "$JOB" "$MNT/job"
        run() { "$PY" -m backend run "$MNT/job" > "$RES/$1.out" 2> "$RES/$1.err"; echo $? > "$RES/$1.rc"; }
        run first
        cp "$MNT/job/out/result.json" "$RES/result-before.json"
        dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null  # fills the disk to the last block
        run full
        cp "$MNT/job/out/result.json" "$RES/result-full.json"
        ls -A "$MNT/job" > "$RES/full.ls"
        rm "$MNT/filler"
        mount -o remount,ro "$MNT"
        run readonly
        cp "$MNT/job/out/result.json" "$RES/result-ro.json"
        """
    )
    env = backend_env() | {"JOB": str(job), "RES": str(results), "PY": sys.executable}
    r = subprocess.run(
        [_UNSHARE, "-rm", "bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr

    def outcome(name):
        events = parse_events((results / f"{name}.out").read_text())
        return int((results / f"{name}.rc").read_text()), events, (results / f"{name}.err").read_text()

    rc, events, err = outcome("first")
    assert rc == 0, err
    before = (results / "result-before.json").read_text()
    rc, events, err = outcome("full")
    assert rc == 1 and "Traceback" not in err, err
    assert events[-1]["kind"] == "cannot_write" and events[-1]["message"].startswith("the disk is full")
    assert (results / "result-full.json").read_text() == before  # the previous out/ is whole
    assert ".out-partial" not in (results / "full.ls").read_text()
    rc, events, err = outcome("readonly")
    assert rc == 1 and "Traceback" not in err, err
    assert [e["event"] for e in events] == ["error"] and events[0]["kind"] == "cannot_write"
    assert "read-only file system" in events[0]["message"]
    assert (results / "result-ro.json").read_text() == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_outputs_have_the_modes_of_ordinary_files(make_job):
    """result.json, flow.npz and the rest of out/ (atomically written or not) are readable by a
    farm worker running as another user: 0666/0777 less the umask (issue 10, case 13)."""
    import stat

    old = os.umask(0o022)
    try:
        job = make_job(num_frames=3)
        r = run_backend("run", job)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    for p in [job / "out", *(job / "out").rglob("*"), *job.iterdir()]:
        want = 0o755 if p.is_dir() else 0o644
        assert stat.S_IMODE(p.stat().st_mode) == want, p
