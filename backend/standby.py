"""`python -m backend standby [--warm MODE] [--frame-size WxH] [--device D] [--watch-parent]`: a
generator made ready before its job.

A cold `python -m backend run JOB` spends its first ~0.5 s on one core (the interpreter, numpy,
PyAV, numba's start and the preview's compiled kernels) before a frame is made: a third of a
720x480 preview. The extension keeps one standby process started ahead of the next Generate
(blender_animate/addon/standby.py); the job then starts on a warm process:
1. Warm up: import what a preview run imports and load its kernels; with `--warm guided` or
   `--warm animateanything` (the client passes the mode of the run before) also torch, diffusers,
   transformers and that mode's pipelines, which a model run otherwise spends ~5-10 s importing
   (the standby then waits with ~0.5 GB instead of ~0.2). Python-level messages of
   that (a kernel that did not build) are kept and written into the job's log later; stderr is
   otherwise the client's (DEVNULL: there is no job folder yet). With `--frame-size WxH` (the
   size of the job expected: the client passes its scene's) it also grows its heap by what a
   preview of that size takes from it (`reserve_size`, backend.allocator.reserve): a process's
   first run otherwise faults all of its working set in (12 % of a 720x480 run on 2 threads).
   The standby then waits with that much more memory.
2. Say `{"event": "ready", "pid": int, "warm": [mode, ...], "reserved_mb": int}` on stdout (one
   line: what was warmed, "preview" first; the client drops it, a benchmark waits for it).
3. Read one line from stdin: `{"job": "<job folder>", "env": {...}}` (JSON: any path; "env":
   the job's own JOB_ENV variables, set before the run). The end of stdin before that line
   (Blender quit, the client stopped the standby) or a signal while waiting exits 0 without a
   word.
4. Append stderr to `JOB/generator.log` and run the job exactly as `run` does (the same events,
   exit codes and files); one job per process, so nothing of a job outlives it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import signal
import sys
from pathlib import Path

LOG_NAME = "generator.log"  # the client's name for the job's log (addon/client.py LOG_NAME)
# Variables a job sets for its own run, sent with the job line (addon/standby.py JOB_ENV): one
# standby serves runs that differ only in them. PNG frames beside video.mp4 (retimed imports).
JOB_ENV = ("ANIMATE_ANYTHING_PNG",)
# A reserve is what a preview of the frame size takes from the heap (preview/budget.py), at most
# RESERVE_CAP and an eighth of the machine's memory.
RESERVE_CAP = 1 << 30


# What a model mode imports before its first step, beside the preview's (each mode's own imports
# are lazy, inside generate: backend/modes/guided.py, animateanything.py).
MODEL_MODULES = {
    "guided": ("torch", "diffusers", "transformers", "backend.guided.pipeline", "backend.wan.pipeline"),
    "animateanything": ("torch", "diffusers", "transformers", "backend.animateanything.pipeline"),
}


def warm_up(mode: str = "preview") -> list[str]:
    """Import and build what a preview run needs (each kernel loader caches its kernel, or its
    None where numba is absent or broken; the run then reuses them), and what `mode` imports
    where it is installed. Returns what was warmed: ["preview"] or ["preview", mode]."""
    from blender_animate import flowviz  # noqa: F401 - importing is the warm-up

    from . import flow_file, outputs, parallel_run, runner  # noqa: F401
    from .modes import preview
    from .preview import pushpull, splat

    for module in ("cv2", "PIL.Image"):  # optional here (the run says what is missing)
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    if "PIL.Image" in sys.modules:
        sys.modules["PIL.Image"].preinit()  # the image plugins a reference is opened with
    outputs.have_pyav()
    kernels = (preview.flow_kernels, splat.compiled_kernel, pushpull.compiled_kernel, outputs._output_kernel)
    for load in kernels:
        load()
    outputs.flow_lut(1.0)  # flow.mp4's colour table, built once per process
    runner.environment()  # package versions for result.json (reads every installed package's metadata)
    try:
        for module in MODEL_MODULES.get(mode, ()):
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 - not installed or broken: the run reports it, as a cold one does
        return ["preview"]
    return ["preview", mode] if mode in MODEL_MODULES else ["preview"]


def reserve_size(width: int, height: int, workers: int) -> int:
    """Bytes to reserve for a preview of width x height pixels on `workers` frame threads."""
    from .preview.budget import heap_bytes

    size = heap_bytes(width, height, workers)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        memory = 8 * RESERVE_CAP
    return max(0, min(size, RESERVE_CAP, memory // 8))


def read_job(stdin) -> tuple[Path, dict] | None:
    """(job folder, its run's variables) from the first line of `stdin` (bytes):
    `{"job": "<path>", "env": {NAME: "value"}}` ("env" optional; names other than JOB_ENV's and
    values that are not strings are ignored). None at the end of input or for a line that is not
    such an object (the client sends nothing else)."""
    line = stdin.readline()
    try:
        message = json.loads(line.decode("utf-8"))
        job, env = message["job"], message.get("env") or {}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(job, str) or not job:
        return None
    env = env if isinstance(env, dict) else {}
    return Path(job), {k: v for k, v in env.items() if k in JOB_ENV and isinstance(v, str)}


def log_to_job(job_dir: Path, early_messages: str) -> None:
    """stderr (fd 2, and fd 1 once run() claims stdout for events) appended to JOB/generator.log,
    which starts with what the warm-up printed. A folder that cannot be written keeps stderr
    where it was: run() reports that folder's problem as an event."""
    try:
        fd = os.open(job_dir / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)
    if early_messages:
        sys.stderr.write(early_messages)
        sys.stderr.flush()


def main(
    *,
    warm: str,
    device: str,
    watch_parent: bool,
    parent_pid: int | None,
    early_signals: list[int],
    frame_size: tuple[int, int] | None = None,
) -> int:
    """Warm up for `warm` (a mode) and, with `frame_size` (width, height), reserve heap for a job
    of that size; wait for the job, run it (`runner.run`'s exit code; 0 when no job came)."""
    from .allocator import reserve
    from .context import worker_count

    messages = io.StringIO()
    with contextlib.redirect_stderr(messages):
        warmed = warm_up(warm)
    reserved = reserve(reserve_size(*frame_size, worker_count())) if frame_size else 0
    if early_signals:  # stopped while warming up: there is no job to cancel
        return 0
    stop_signals = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s]
    recording = {s: signal.getsignal(s) for s in stop_signals}
    for s in stop_signals:  # while waiting a signal just ends the process
        signal.signal(s, lambda *_: os._exit(0))
    ready = {"event": "ready", "pid": os.getpid(), "warm": warmed, "reserved_mb": round(reserved / 2**20)}
    ready = json.dumps(ready) + "\n"
    try:
        os.write(1, ready.encode())
    except OSError:  # nobody listens
        return 0
    job = read_job(sys.stdin.buffer)
    for s, handler in recording.items():  # from here on a signal cancels the run, as in `run`
        signal.signal(s, handler)
    if job is None:
        return 0
    job_dir, job_env = job
    os.environ.update(job_env)  # read when the run writes (outputs.png_frames_wanted)
    from .runner import run

    log_to_job(job_dir.absolute(), messages.getvalue())
    return run(
        job_dir, device=device, watch_parent=watch_parent, parent_pid=parent_pid, early_signals=early_signals
    )
