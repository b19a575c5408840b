"""Submit job folders to the farm and follow every job without blocking (stdlib only).

`FarmProcess(batch_dir, job_dirs, python, address=...).start()` runs
``[python, "-m", "backend", "farm", "run", JOB..., "--address", ADDR]`` (an argument list, never a
shell; no ``--address`` for a local farm) the way `client.GeneratorProcess` runs one job: the
extension root as working directory and first on PYTHONPATH, its own process group (a local Ray
cluster the farm starts is in it too, so stopping the group leaves nothing behind), stderr to
``batch_dir/farm.log``. `poll()` never blocks and hands out the farm's events (docs/farm.md); the
last one is always exactly one terminal event: the farm's ``summary``, or an ``error`` without a
``job`` (the request failed, or the farm process died: kind ``crashed``).

`jobs` maps each job folder to its `RunState`; `apply(event)` feeds a job's events into it and
returns ``(job_dir, "done")`` when that job's result is ready to import (its ``done`` event), or
``(job_dir, "ended")`` when it failed or was cancelled.

Cancelling: `cancel()` sends SIGTERM to the farm process (it cancels every job: waiting ones never
start, running ones stop through their runner), SIGKILL to its group after `kill_after` seconds;
`cancel_job(job_dir)` writes that job's ``cancel`` file (the farm notices it).

`online_problem(address, online_access)`: the message for a farm address that is not this machine
while Blender's online access is off (None when it may be used).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .client import CANCEL_FILE, GeneratorProcess
from .run_state import RunState

FARM_LOG = "farm.log"
LOCAL_ADDRESSES = ("", "auto", "local")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def address_host(address: str) -> str | None:
    """The host of a Ray address ("HOST:PORT", "ray://HOST:PORT", "[::1]:6379"), None when local."""
    address = address.strip()
    if address in LOCAL_ADDRESSES:
        return None
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[: rest.index("]") + 1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def is_local_address(address: str) -> bool:
    """True for a farm on this machine: empty (a private local cluster), "auto", or a loopback host."""
    host = address_host(address)
    return host is None or host in LOOPBACK_HOSTS


def online_problem(address: str, online_access: bool) -> str | None:
    """Why a farm at `address` may not be used now, or None."""
    if online_access or is_local_address(address):
        return None
    return (
        f"the farm address {address} is another machine and Blender's online access is off: allow it in "
        "Preferences > System > Network, or clear Farm Address to run the farm on this machine"
    )


class FarmProcess(GeneratorProcess):
    """One `python -m backend farm run` for the job folders in `job_dirs` (see the module
    docstring). `batch_dir` holds the farm's log; the jobs are usually inside it."""

    def __init__(
        self,
        batch_dir,
        job_dirs,
        python: str | None = None,
        *,
        address: str = "",
        extension_root=None,
        extra_paths=(),
        env: dict | None = None,
        kill_after: float = 30.0,
    ):
        super().__init__(
            batch_dir, python, extension_root=extension_root, extra_paths=extra_paths, env=env,
            term_after=0.0, kill_after=kill_after,
        )  # fmt: skip
        self.log_path = self.job_dir / FARM_LOG
        self.address = address.strip()
        self.jobs: dict[Path, RunState] = {
            Path(d).resolve(): RunState(Path(d).resolve(), python=self.python) for d in job_dirs
        }
        self.summary: dict | None = None

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "backend", "farm", "run", *map(str, self.jobs)]
        return cmd + (["--address", self.address] if self.address else [])

    # -- per-job state
    def apply(self, event: dict) -> tuple[Path, str] | None:
        """Feed one event to its job's RunState; see the module docstring."""
        if event.get("event") == "summary":
            self.summary = event
            return None
        job = event.get("job")
        state = self.jobs.get(Path(job)) if isinstance(job, str) else None
        if state is None or state.finished:
            return None
        kind = event.get("event")
        if kind == "submitted":
            state.stage = "waiting for a worker"
        elif kind == "attempt":
            state.stage = f"on {event.get('node', '?')}" + (
                f" (try {event['attempt']})" if event.get("attempt", 1) > 1 else ""
            )
        elif kind == "retry":
            state.stage = f"retrying: {event.get('message', '')}"
        elif kind == "job_end":
            if event.get("state") == "cancelled":
                state.end("cancelled", "cancelled: nothing was imported")
            elif event.get("state") == "failed":
                state.end("failed", str(event.get("message") or event.get("kind") or "failed"))
            else:
                return None
            return state.job_dir, "ended"
        else:
            outcome = state.apply(event)
            if outcome is not None:
                return state.job_dir, outcome
        return None

    # -- the stream's end is the summary, not a job's done/error
    def _deliver(self, events: list[dict], exited: bool = False) -> list[dict]:
        out = []
        for event in events:
            out.append(event)
            if event.get("event") == "summary" or (event.get("event") == "error" and "job" not in event):
                self._finish(event)
                return out
        if exited:
            final = self._exit_error()
            if final.get("kind") == "crashed":
                final["message"] = final["message"].replace("the generator", "the farm", 1)
            out.append(final)
            self._finish(final)
        return out

    # -- cancelling
    def cancel(self) -> None:
        if self.finished or self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the farm alone: it cancels its jobs, then its cluster
            self._signals_sent.append("TERM")

    def cancel_job(self, job_dir) -> None:
        path = Path(job_dir).resolve()
        if path in self.jobs and not self.jobs[path].finished:
            (path / CANCEL_FILE).write_text("cancelled from Blender\n")
