"""The farm's bookkeeping, without Ray: what a job needs, how it ended, the summary.

A `FarmJob` is one job folder on the farm. States: `pending` (submitted, not started on a worker),
`running` (a worker started its runner), then one of `done`, `failed`, `cancelled`. `attempts`
counts the workers that started it; a retry happens only when the worker or the runner died
without an answer (see `RETRY_REASONS`): a job that failed with an error event is not retried, the
same inputs would fail the same way.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from blender_animate import job as jobio

GPU_MODES = ("guided", "animateanything")
TERMINAL = ("done", "failed", "cancelled")
# Why a job is retried: its Ray worker (or node) died, or its runner ended without done/error.
RETRY_REASONS = ("worker_died", "crashed")


class FarmError(ValueError):
    """A farm request that cannot start (a folder that is not a job, the same job twice)."""


@dataclass
class FarmJob:
    """One job folder on the farm and what happened to it so far."""

    job_dir: Path
    mode: str
    fingerprint: str  # sha256 of job.json: a worker that sees other content is not on shared storage
    state: str = "pending"
    attempts: int = 0
    node: str = ""
    worker_pid: int | None = None
    runner_pid: int | None = None
    kind: str = ""  # the error kind when failed/cancelled
    message: str = ""
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    ended_at: float | None = None
    cancel_requested: bool = False

    @property
    def name(self) -> str:
        return str(self.job_dir)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def seconds(self) -> float:
        """Wall time from the first start on a worker to the end (0 when it never started)."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def end(self, state: str, kind: str = "", message: str = "") -> None:
        self.state, self.kind, self.message = state, kind, message
        self.ended_at = time.monotonic()

    def row(self) -> dict:
        """The summary event's entry for this job."""
        return {
            "job": self.name,
            "mode": self.mode,
            "state": self.state,
            "attempts": self.attempts,
            "node": self.node,
            "seconds": round(self.seconds(), 2),
            "kind": self.kind,
            "message": self.message,
        }


def fingerprint(job_dir: Path) -> str:
    """sha256 of the job's job.json (the worker compares it with what it reads)."""
    return hashlib.sha256((job_dir / jobio.JOB_JSON).read_bytes()).hexdigest()


def load_jobs(paths) -> list[FarmJob]:
    """FarmJobs for the given folders (absolute paths); FarmError names the first folder that is
    not a readable job or that is given twice. Only job.json is read here: the runner on the
    worker validates the rest, as it does for a local run."""
    jobs, seen = [], set()
    for raw in paths:
        job_dir = Path(raw).absolute()
        if job_dir in seen:
            raise FarmError(f"{job_dir} is given twice: one run per job folder at a time")
        seen.add(job_dir)
        try:
            spec = jobio.read_spec(job_dir)
        except (OSError, ValueError) as exc:
            raise FarmError(f"{job_dir} is not a job folder: {exc}") from exc
        jobs.append(FarmJob(job_dir, spec.mode, fingerprint(job_dir)))
    if not jobs:
        raise FarmError("no job folders given")
    return jobs


def resources(mode: str, *, gpus: float = 1.0, cpus: float = 1.0) -> dict:
    """Ray task resources for a mode: a GPU (and a CPU) for guided/animateanything, CPUs only
    for the preview."""
    if mode in GPU_MODES:
        return {"num_cpus": cpus, "num_gpus": gpus}
    return {"num_cpus": cpus, "num_gpus": 0}


def should_retry(job: FarmJob, reason: str, retries: int) -> bool:
    """Retry when the worker or runner died, the job was not cancelled, and attempts remain
    (`retries` is the number of extra attempts allowed)."""
    return reason in RETRY_REASONS and not job.cancel_requested and job.attempts <= retries


def exit_code(jobs: list[FarmJob]) -> int:
    """0 when every job is done, 3 when none failed but some were cancelled, 1 otherwise."""
    states = {j.state for j in jobs}
    if states <= {"done"}:
        return 0
    if "failed" in states or not states <= set(TERMINAL):
        return 1
    return 3


def format_table(jobs: list[FarmJob]) -> str:
    """The summary table printed at the end (one line per job, then the totals)."""
    head = ("job", "mode", "state", "tries", "node", "seconds", "message")
    rows = [
        (
            j.job_dir.name,
            j.mode,
            j.state,
            str(j.attempts),
            j.node or "-",
            f"{j.seconds():.1f}",
            (j.message or "")[:60],
        )
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    counts = {s: sum(j.state == s for j in jobs) for s in TERMINAL}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(jobs)} jobs")
    return "\n".join(lines)
