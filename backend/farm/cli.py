"""`python -m backend farm run JOB_DIR... [--address ADDR]` and `python -m backend farm cancel JOB_DIR...`.

`run` prints one JSON event per line on stdout (docs/farm.md: the runner's events tagged with the
job, the farm's own, a `summary` last) and the summary table on stderr. Exit codes: 0 every job
done, 1 some failed, 2 the request itself is wrong (not a job folder, Ray missing, cluster not
reachable), 3 none failed but some were cancelled. SIGINT/SIGTERM cancel every job (a second one
kills the running workers). `cancel` writes `JOB/cancel` for each folder: the farm running it (on
any machine that shares the folder) cancels that job.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .jobs import FarmError

CODE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding backend/ and blender_animate/


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend farm", description="Run job folders on a Ray cluster."
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run job folders as Ray tasks; JSON events on stdout, a table on stderr")
    run.add_argument("jobs", nargs="+", metavar="JOB_DIR", help="job folders on storage every worker shares")
    run.add_argument(
        "--address",
        default=None,
        help="the cluster: HOST:PORT, ray://HOST:10001 or auto (default: a local one)",
    )
    run.add_argument("--workers", type=int, default=None, help="CPUs of the local cluster (default: all)")
    run.add_argument("--gpus", type=int, default=None, help="GPUs of the local cluster (default: detected)")
    run.add_argument("--retries", type=int, default=2, help="extra attempts for a job whose worker died")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    run.add_argument("--python", default=None, help="the generator Python on the workers (default: Ray's)")
    run.add_argument(
        "--code-root", default=str(CODE_ROOT), help="this extension's folder as the workers see it"
    )
    run.add_argument(
        "--gpus-per-job", type=float, default=1.0, help="GPUs a guided/animateanything job takes"
    )
    run.add_argument("--cpus-per-job", type=float, default=1.0, help="CPUs every job takes")
    run.add_argument(
        "--wait-for-resources",
        action="store_true",
        help="queue GPU jobs even when no GPU worker is there yet",
    )
    run.add_argument("--no-table", action="store_true", help="leave out the summary table on stderr")
    cancel = sub.add_parser("cancel", help="cancel jobs a farm is running (writes JOB/cancel)")
    cancel.add_argument("jobs", nargs="+", metavar="JOB_DIR")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "cancel":
        return _cancel(args.jobs)
    from ..events import Events

    events = Events.take_stdout()  # Ray and libraries print to stderr from here on

    def emit(event: dict) -> None:
        events.emit(event.pop("event"), **event)

    from . import cluster
    from .driver import Farm
    from .jobs import format_table, load_jobs

    try:
        jobs = load_jobs(args.jobs)
        ray = cluster.connect(args.address, num_cpus=args.workers, num_gpus=args.gpus)
    except FarmError as exc:
        emit({"event": "error", "kind": "invalid_job", "message": str(exc), "hint": "", "origin": "farm"})
        print(f"farm: {exc}", file=sys.stderr)
        return 2
    try:
        farm = Farm(
            ray,
            jobs,
            emit=emit,
            code_root=args.code_root,
            python=args.python,
            device=args.device,
            retries=args.retries,
            gpus=args.gpus_per_job,
            cpus=args.cpus_per_job,
            wait_for_resources=args.wait_for_resources,
        )

        def on_signal(signum, frame):
            farm.signals += 1  # acted on by the loop, not here (never call Ray from a handler)

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        code = farm.run()
        if not args.no_table:
            print(format_table(jobs), file=sys.stderr)
        return code
    finally:
        cluster.shutdown()


def _cancel(paths) -> int:
    code = 0
    for raw in paths:
        job_dir = Path(raw)
        if not (job_dir / "job.json").is_file():
            print(f"farm: {job_dir} is not a job folder", file=sys.stderr)
            code = 2
            continue
        (job_dir / "cancel").touch()
    return code
