"""What one Ray task runs: one attempt of one job, with the normal runner (stdlib only).

This module is sent to the workers by value (cloudpickle), so a worker needs neither this
checkout nor numpy to start it: the task itself checks what the worker can see and says so.

1. Shared storage: the job folder must exist on the worker at the path the driver gave, with the
   same job.json (its sha256); the generator code must be at `code_root`. Otherwise the attempt
   ends with an error event of kind `not_shared` (the farm never copies a job folder).
2. A retry on the node where the previous attempt's runner still lives waits for it to end (its
   `--watch-parent` ends it within ~1.5 s of its worker's death), so two runs never share a folder.
3. `[python, "-m", "backend", "run", JOB, "--device", D, "--watch-parent"]` runs as a child in its
   own session (an argument list, never a shell); stderr is appended to `JOB/generator.log`.
4. Every JSON line the runner prints goes to the sink actor as it comes, tagged
   `{"job": JOB, "attempt": n}`; an `attempt` event (node, worker pid, runner pid) comes first.
5. The result says how the attempt ended: the runner's final event, its exit code, and
   `reason` "crashed" when it ended without a done/error event (killed by a signal).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

NOT_SHARED_HINT = (
    "Put the job folders (and the generator code) on storage every Ray worker mounts at the same "
    "path (NFS, SMB, a Kubernetes volume), or run the farm on one machine; the farm copies nothing."
)
PREVIOUS_RUNNER_WAIT = 10.0


def run_attempt(job_dir: str, fingerprint: str, attempt: int, options: dict, sink, previous=None) -> dict:
    """Run one attempt of the job in `job_dir` on this worker; see the module docstring.
    `options`: code_root, python (None: this worker's Python), device. `sink`: the EventSink actor
    handle (`put(events)`). `previous`: {"node", "runner_pid"} of the attempt before, if any."""
    node = socket.gethostname()
    tags = {"job": job_dir, "attempt": attempt}
    pending = []

    def send(event: dict) -> None:
        pending.append(sink.put.remote([{**event, **tags}]))

    def finish(result: dict) -> dict:
        if pending:  # actor calls run in order: the last one done means all are
            import ray

            ray.get(pending[-1])
        return {"node": node, **result}

    problem = _storage_problem(Path(job_dir), fingerprint, Path(options["code_root"]), node)
    python = options.get("python") or sys.executable
    if problem is None and not Path(python).exists():
        problem = f"the Python {python} does not exist on worker {node}"
    if problem is not None:
        error = {"event": "error", "kind": "not_shared", "message": problem, "hint": NOT_SHARED_HINT}
        send({**error, "origin": "farm"})
        return finish({"returncode": 1, "final": error, "reason": ""})

    if previous and previous.get("node") == node and previous.get("runner_pid"):
        _wait_gone(int(previous["runner_pid"]), PREVIOUS_RUNNER_WAIT)

    cmd = [
        python,
        "-m",
        "backend",
        "run",
        job_dir,
        "--device",
        options.get("device", "auto"),
        "--watch-parent",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (options["code_root"], env.get("PYTHONPATH", "")) if p)
    log_path = Path(job_dir) / "generator.log"
    with open(log_path, "ab") as log:
        log.write(f"\n--- farm attempt {attempt} on {node} (worker pid {os.getpid()})\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=options["code_root"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=os.name == "posix",
        )
    send({"event": "attempt", "node": node, "worker_pid": os.getpid(), "runner_pid": proc.pid})
    final = None
    try:
        for raw in proc.stdout:
            event = _parse(raw)
            if event is None:
                continue
            send(event)
            if event["event"] in ("done", "error"):
                final = event
        code = proc.wait()
    except BaseException:  # ray.cancel (KeyboardInterrupt) or the worker shutting down
        _stop(proc)
        raise
    finally:
        proc.stdout.close()
    if final is None:
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        return finish(
            {
                "returncode": code,
                "final": None,
                "reason": "crashed",
                "message": f"the runner ended ({how}) without a result",
            }
        )
    return finish({"returncode": code, "final": final, "reason": ""})


def _storage_problem(job_dir: Path, fingerprint: str, code_root: Path, node: str) -> str | None:
    """Why this worker cannot run the job where it is, or None."""
    spec = job_dir / "job.json"
    if not spec.is_file():
        return f"the job folder {job_dir} is not visible on worker {node}"
    if hashlib.sha256(spec.read_bytes()).hexdigest() != fingerprint:
        return f"{spec} on worker {node} is not the job.json that was submitted (another folder at that path)"
    if not (code_root / "backend" / "__main__.py").is_file():
        return f"the generator code is not at {code_root} on worker {node} (pass --code-root)"
    return None


def _parse(raw: bytes) -> dict | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the runner's session (it cancels and cleans up), SIGKILL after `grace` s."""
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            else:
                proc.terminate()
        except OSError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class EventSink:
    """The actor tasks send their events to (`put`), and the driver collects them from (`drain`).
    Calls from one task run in the order they were made."""

    def __init__(self):
        self._events: list[dict] = []

    def put(self, events: list[dict]) -> None:
        self._events.extend(events)

    def drain(self) -> list[dict]:
        events, self._events = self._events, []
        return events
