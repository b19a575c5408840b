"""Command line: `python -m backend run JOB [--device D]` and `python -m backend doctor [--json]`."""

from __future__ import annotations

import argparse
import os
import sys

# The parent as early as possible: a client that dies during start-up is still noticed.
_PARENT_AT_START = os.getppid()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backend", description="Animate Anything generator process (one job per run)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the job in a job directory; JSON events on stdout")
    p_run.add_argument("job", help="the job directory (holds job.json)")
    p_run.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="override job.json's device"
    )
    p_run.add_argument(
        "--watch-parent", action="store_true", help="cancel the run when the process that started it ends"
    )
    p_doc = sub.add_parser("doctor", help="report Python, packages, devices and models in plain words")
    p_doc.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p_doc.add_argument(
        "--models", nargs="*", default=[], metavar="DIR", help="extra folders to look for models in"
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        from .allocator import keep_freed_memory
        from .runner import run

        keep_freed_memory()

        return run(args.job, device=args.device, watch_parent=args.watch_parent, parent_pid=_PARENT_AT_START)
    from .doctor import main as doctor_main

    return doctor_main(as_json=args.json, model_dirs=args.models)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
