"""The farm driver: submit every job as a Ray task, follow it, retry, cancel, summarise.

`Farm(ray, jobs, emit=...)` with `run()` (blocks; returns the exit code) or `start()` + `step()`
for callers with their own loop. Every event is a dict handed to `emit`: the runner's own events
tagged `{"job": JOB, "attempt": n}`, plus the farm's:
`{"event": "submitted", "job", "attempt", "resources"}`, `{"event": "attempt", "job", "attempt",
"node", "worker_pid", "runner_pid"}` (a worker started the runner), `{"event": "retry", "job",
"attempt", "reason", "message"}`, `{"event": "job_end", "job", "state", "kind", "message"}` and
last `{"event": "summary", "jobs": [row...], "counts": {...}}`. Farm-made errors carry
`"origin": "farm"`.

Cancelling: `cancel(job_dir)` or `cancel()` (all). A job not yet on a worker is cancelled in Ray
(it never starts); a running one gets `JOB/cancel`, which its runner honours within ~1.5 s
(removing its partial output); one still running `cancel_grace` seconds later has its worker
killed. A `JOB/cancel` file written by anyone else (e.g. `python -m backend farm cancel JOB`)
counts the same. Stale cancel files are removed when a job is first submitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from blender_animate.job import CANCEL_FILE

from . import task
from .jobs import FarmJob, exit_code, resources, should_retry


class Farm:
    """Runs `jobs` (FarmJob list) on the connected Ray cluster; see the module docstring."""

    def __init__(
        self,
        ray,
        jobs: list[FarmJob],
        *,
        emit: Callable[[dict], None],
        code_root: str | Path,
        python: str | None = None,
        device: str = "auto",
        retries: int = 2,
        gpus: float = 1.0,
        cpus: float = 1.0,
        wait_for_resources: bool = False,
        cancel_grace: float = 15.0,
        poll: float = 0.1,
    ):
        self.ray = ray
        self.jobs = jobs
        self.emit = emit
        self.options = {"code_root": str(code_root), "python": python, "device": device}
        self.retries, self.gpus, self.cpus = retries, gpus, cpus
        self.wait_for_resources = wait_for_resources
        self.cancel_grace, self.poll = cancel_grace, poll
        self._refs: dict = {}  # ObjectRef -> FarmJob (its current attempt)
        self._cancel_at: dict[Path, float] = {}
        self._remote = ray.remote(task.run_attempt)
        self._sink = None
        self.signals = 0  # SIGINT/SIGTERM seen (cli.py): the first cancels all, the next kills
        self._signals_seen = 0

    # -- the loop
    def run(self) -> int:
        """Run every job to its end; emits the summary last and returns the exit code."""
        self.start()
        try:
            while not self.finished:
                self.step()
        finally:
            self.close()
        return self.summary()

    def close(self) -> None:
        """End the event sink actor (the jobs' tasks are finished or cancelled by then)."""
        if self._sink is not None:
            self.ray.kill(self._sink)
            self._sink = None

    @property
    def finished(self) -> bool:
        return all(j.finished for j in self.jobs)

    def start(self) -> None:
        self._sink = self.ray.remote(num_cpus=0)(task.EventSink).remote()
        gpus_there = self.ray.cluster_resources().get("GPU", 0)
        for job in self.jobs:
            (job.job_dir / CANCEL_FILE).unlink(missing_ok=True)
            needs = resources(job.mode, gpus=self.gpus, cpus=self.cpus)
            if needs["num_gpus"] > gpus_there and not self.wait_for_resources:
                self._end(
                    job,
                    "failed",
                    "no_gpu",
                    f"mode {job.mode} needs a GPU and the cluster has {gpus_there:g}: start a GPU worker "
                    "(ray start --address=HEAD:6379 --num-gpus=1) or pass --wait-for-resources",
                )
                continue
            self._submit(job, None)

    def step(self) -> None:
        """One round: collect finished tasks and events, act on cancel requests."""
        ready = []
        if self._refs:
            ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=self.poll)
        else:
            time.sleep(self.poll)
        self._drain()
        for ref in ready:
            self._finish(self._refs.pop(ref), ref)
        self._watch_cancels()

    def summary(self) -> int:
        counts = {s: sum(j.state == s for j in self.jobs) for s in ("done", "failed", "cancelled")}
        self.emit({"event": "summary", "jobs": [j.row() for j in self.jobs], "counts": counts})
        return exit_code(self.jobs)

    # -- cancelling
    def cancel(self, job_dir: str | Path | None = None, *, force: bool = False) -> None:
        """Cancel one job (by folder) or all; `force` kills running workers at once."""
        targets = [j for j in self.jobs if job_dir is None or j.job_dir == Path(job_dir).absolute()]
        for job in targets:
            if job.finished:
                continue
            if not job.cancel_requested:
                job.cancel_requested = True
                self._cancel_at[job.job_dir] = time.monotonic()
                if job.state == "running":
                    (job.job_dir / CANCEL_FILE).touch()
            ref = self._ref_of(job)
            if ref is None:
                continue
            if job.state == "pending":
                self.ray.cancel(ref)
            elif force:
                self.ray.cancel(ref, force=True)

    def _watch_cancels(self) -> None:
        if self.signals > self._signals_seen:
            self._signals_seen = self.signals
            self.cancel(force=self.signals > 1)
        now = time.monotonic()
        for job in self.jobs:
            if job.finished:
                continue
            if not job.cancel_requested and (job.job_dir / CANCEL_FILE).exists():
                self.cancel(job.job_dir)
            elif job.cancel_requested and now - self._cancel_at[job.job_dir] > self.cancel_grace:
                self.cancel(job.job_dir, force=True)

    # -- internals
    def _ref_of(self, job: FarmJob):
        return next((r for r, j in self._refs.items() if j is job), None)

    def _submit(self, job: FarmJob, previous: dict | None) -> None:
        job.attempts += 1
        job.state = "pending"
        needs = resources(job.mode, gpus=self.gpus, cpus=self.cpus)
        ref = self._remote.options(
            max_retries=0, name=f"animate-anything:{job.job_dir.name}", **needs
        ).remote(job.name, job.fingerprint, job.attempts, self.options, self._sink, previous)
        self._refs[ref] = job
        self.emit({"event": "submitted", "job": job.name, "attempt": job.attempts, "resources": needs})

    def _drain(self) -> None:
        by_name = {j.name: j for j in self.jobs}
        for event in self.ray.get(self._sink.drain.remote()):
            job = by_name.get(event.get("job"))
            if job is None or event.get("attempt") != job.attempts:
                continue  # an event of an attempt already given up on
            if event["event"] == "attempt":
                job.state = "running"
                job.node, job.worker_pid, job.runner_pid = (
                    event["node"],
                    event["worker_pid"],
                    event["runner_pid"],
                )
                if job.started_at is None:
                    job.started_at = time.monotonic()
                if job.cancel_requested:
                    (job.job_dir / CANCEL_FILE).touch()
            self.emit(event)

    def _finish(self, job: FarmJob, ref) -> None:
        ray = self.ray
        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return self._end(job, "cancelled", "cancelled", "cancelled before it finished")
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.LocalRayletDiedError,
        ) as exc:
            return self._after_death(job, "worker_died", f"the Ray worker died: {type(exc).__name__}")
        except ray.exceptions.RayError as exc:
            return self._end(job, "failed", "internal", f"the farm task failed: {exc}")
        final = result.get("final")
        job.node = result.get("node", job.node)
        if final is None:
            return self._after_death(job, result.get("reason", "crashed"), result.get("message", ""))
        if final["event"] == "done":
            return self._end(job, "done")
        kind = final.get("kind", "internal")
        state = "cancelled" if kind == "cancelled" else "failed"
        self._end(job, state, kind, final.get("message", ""))

    def _after_death(self, job: FarmJob, reason: str, message: str) -> None:
        if job.cancel_requested:
            return self._end(job, "cancelled", "cancelled", f"cancelled ({message})")
        if should_retry(job, reason, self.retries):
            self.emit(
                {
                    "event": "retry",
                    "job": job.name,
                    "attempt": job.attempts + 1,
                    "reason": reason,
                    "message": message,
                }
            )
            return self._submit(job, {"node": job.node, "runner_pid": job.runner_pid})
        self._end(job, "failed", reason, f"{message} (after {job.attempts} attempts)")

    def _end(self, job: FarmJob, state: str, kind: str = "", message: str = "") -> None:
        job.end(state, kind, message)
        event = {"event": "job_end", "job": job.name, "state": state, "kind": kind, "message": message}
        if kind in ("no_gpu", "internal", "worker_died", "crashed"):
            event["origin"] = "farm"
        self.emit(event)
