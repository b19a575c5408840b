"""Several processes for one video: how many ranks a run uses, and the torchrun child that runs them.

`ranks_for(ctx)` decides, from `ANIMATE_ANYTHING_CP` and the machine, without importing diffusers:
- "" (unset): the visible CUDA device count when it is > 1, the job is mode guided on device
  auto/cuda and the family's transformer has a context-parallel plan (Wan; CogVideoX has none);
  else 1 (the usual single process).
- "0" or "1": 1 (off).
- N >= 2: N ranks, forced (allowed on CPU, where the ranks use gloo: the tests do this).

`run_ranks(...)` starts `python -m torch.distributed.run --standalone --nproc-per-node N -m
backend.cp_rank JOB --partial PARTIAL --device DEVICE` (an argument list, its own process group),
forwards rank 0's events (rank 0 alone emits them and writes PARTIAL, result.json last) into this
process's stream, and returns the `done` outputs read from PARTIAL/result.json. A cancel here (the
cancel file or a signal, seen by `state`) sends SIGTERM to the child's process group, then SIGKILL
after `STOP_GRACE_S`; the ranks also watch the cancel file themselves. A rank's error event becomes
the same failure here; a child that ends without one (a rank killed, torchrun failing) becomes
kind internal.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from blender_animate import result as contract

from .errors import Cancelled, JobFailure
from .runtime.context_parallel import AUTO_ENV, FAMILIES_WITH_PLAN, OFF_HINT

ENV = "ANIMATE_ANYTHING_CP"
ROOT = Path(__file__).resolve().parents[1]  # holds the backend package
STOP_GRACE_S = 1.0  # below the cancel watcher's 1.5 s grace, so the child is gone before we exit


def _cuda_count() -> int:
    try:
        import torch
    except ModuleNotFoundError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def ranks_for(ctx, env=None, cuda_count=None) -> int:
    """The number of ranks for the job in `ctx` (a JobContext: `spec.mode`, `spec.model_family`,
    `requested_device`). `env`: the environment (default os.environ); `cuda_count`: a callable
    giving the visible CUDA device count (default torch's, imported only when needed)."""
    env = os.environ if env is None else env
    raw = env.get(ENV, "").strip()
    spec = ctx.spec
    family = getattr(spec, "model_family", "cogvideox")
    device = ctx.requested_device
    if raw:
        try:
            forced = int(raw)
        except ValueError:
            forced = -1
        if forced < 0:
            raise JobFailure(
                "invalid_job",
                f"{ENV}={raw!r} is not a rank count",
                f"Set {ENV} to 0 (off), 1 (off) or the number of ranks, or unset it (automatic).",
            )
        if forced <= 1:
            return 1
        if spec.mode != "guided" or family not in FAMILIES_WITH_PLAN:
            raise JobFailure(
                "invalid_job",
                f"{ENV}={forced} asks for context parallelism, which only mode guided with model_family "
                f"{', '.join(sorted(FAMILIES_WITH_PLAN))} has (this job: mode {spec.mode}, family {family})",
                OFF_HINT,
            )
        if device == "cuda":
            have = (cuda_count or _cuda_count)()
            if have < forced:
                raise JobFailure(
                    "invalid_job",
                    f"{ENV}={forced} asks for {forced} GPUs but {have} are visible",
                    f"Set {ENV} to at most {have}, or " + OFF_HINT,
                )
        return forced
    if spec.mode != "guided" or family not in FAMILIES_WITH_PLAN or device not in ("auto", "cuda"):
        return 1
    have = (cuda_count or _cuda_count)()
    return have if have > 1 else 1


def rank_command(job_dir: Path, partial: Path, ranks: int, device: str) -> list[str]:
    """The torchrun argument list for `ranks` ranks of backend/cp_rank.py."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(int(ranks)),
        "-m",
        "backend.cp_rank",
        str(job_dir),
        "--partial",
        str(partial),
        "--device",
        device,
    ]


def automatic(env=None) -> bool:
    """True when ranks_for chooses by itself (ANIMATE_ANYTHING_CP unset)."""
    return not (os.environ if env is None else env).get(ENV, "").strip()


def rank_env(ranks: int) -> dict:
    """The child's environment: the backend importable, CPU threads shared out, stdout unbuffered,
    AUTO_ENV = 1 when the ranks were chosen automatically (they then hand back a job whose model
    does not fit whole on each GPU instead of failing)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    threads = max(1, (os.cpu_count() or 1) // max(1, ranks))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])
    env["PYTHONUNBUFFERED"] = "1"
    env[AUTO_ENV] = "1" if automatic() else "0"
    env.pop(ENV, None)  # the ranks do not start ranks of their own
    env["ANIMATE_ANYTHING_CP_RUNNER"] = str(os.getpid())  # a killed runner cancels the ranks
    return env


def run_ranks(job_dir: Path, partial: Path, ranks: int, device: str, events, state) -> dict | None:
    """Run the job in `ranks` torchrun ranks; returns the `done` outputs (rank 0 wrote `partial`),
    or None when the ranks handed the job back (automatic ranks, the model does not fit whole on
    each GPU: a warning says so, and the caller runs it in one process).

    `events`: this run's Events (rank 0's progress and warnings are re-emitted there, one JSON line
    each); `state`: this run's CancelState. Raises Cancelled or JobFailure as a single-process run
    would."""
    proc = subprocess.Popen(
        rank_command(job_dir, partial, ranks, device),
        cwd=str(ROOT),
        env=rank_env(ranks),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,  # one group: a cancel signals torchrun and every rank at once
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, name="cp-ranks", daemon=True)
    reader.start()
    failure = None
    try:
        while True:
            state.check()
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            reported = _forward(line, events)
            # The first error that is no cancel wins: ranks stopped because another failed say
            # "cancelled" (SIGTERM from torchrun) and may come before the real cause.
            if reported is not None and (failure is None or failure[0] == "cancelled"):
                failure = reported
        code = proc.wait()
    except BaseException:
        stop(proc)
        raise
    finally:
        reader.join(timeout=1.0)
        if proc.stdout is not None:
            proc.stdout.close()
    state.check()
    if failure is not None:
        kind, message, hint = failure
        if kind == "cancelled" and (Path(job_dir) / "cancel").exists():
            raise Cancelled(message or "cancelled (cancel file)")
        if kind == "cancelled":  # not asked here: a rank was stopped because another one failed
            raise JobFailure(
                "internal", f"a context-parallel rank stopped ({message}; torchrun exit code {code})", _hint()
            )
        if kind == "one_process":
            events.emit(
                "warning",
                message=f"several GPUs: each GPU cannot hold the whole model ({message}), so the job runs "
                "on one GPU with that plan (set ANIMATE_ANYTHING_CP=0 to skip trying)",
            )
            return None
        raise JobFailure(kind, message, hint)
    result = Path(partial) / contract.RESULT_JSON
    if code != 0 or not result.is_file():
        raise JobFailure(
            "internal",
            f"the context-parallel ranks ended without a result (torchrun exit code {code}); a rank was "
            "killed or failed to start",
            _hint(),
        )
    return json.loads(result.read_text(encoding="utf-8"))["outputs"]


def _hint() -> str:
    return "The generator's stderr has torchrun's report naming the failed rank. " + OFF_HINT


def _forward(line: bytes, events):
    """Re-emit one line of rank 0's stdout; returns (kind, message, hint) for an error event.
    A line that is not an event goes to stderr, so the stream stays JSON."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        sys.stderr.write(line.decode("utf-8", "replace"))
        sys.stderr.flush()
        return None
    name = event.pop("event")
    if name == "one_process":  # rank 0 hands the job back (see cp_rank); not part of the stream
        return ("one_process", str(event.get("reason", "")), "")
    if name == "error":  # becomes this run's final event through the runner
        return (
            event.get("kind", "internal"),
            str(event.get("message", "")),
            str(event.get("hint", "")),
        )
    if name in ("started", "done"):  # this process reports those itself
        return None
    events.emit(name, **event)
    return None


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL after STOP_GRACE_S; waits for torchrun."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Ranks left in the group after torchrun ended (it did not reap them): gone too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def doctor_line(cuda_count: int, env=None) -> str:
    """What `ranks_for` picks for a Wan guided job on device auto with `cuda_count` visible GPUs, in
    words (`python -m backend doctor`)."""
    from types import SimpleNamespace

    ctx = SimpleNamespace(spec=SimpleNamespace(mode="guided", model_family="wan"), requested_device="auto")
    try:
        ranks = ranks_for(ctx, env, lambda: cuda_count)
    except JobFailure as exc:
        return f"several GPUs: {exc.message}"
    if ranks > 1:
        return (
            f"several GPUs: Wan jobs run in {ranks} ranks (context parallelism, Ulysses; {ENV}=0 turns it "
            "off); CogVideoX has no context-parallel plan and uses one GPU"
        )
    forced = (os.environ if env is None else env).get(ENV, "").strip()
    why = f"{ENV} is off" if forced else "one GPU or none"
    return f"several GPUs: not used ({why}); a job runs in one process"
