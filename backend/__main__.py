"""Command line: `python -m backend run JOB [--device D]`, `python -m backend standby [--warm M]`
(backend/standby.py: warm up, then run the job whose folder arrives on stdin) and
`python -m backend doctor [--json]`.

The first thing `python -m backend` does is catch SIGTERM, SIGINT and SIGHUP with a handler that
only records them (`_EARLY`): a signal during start-up (imports take a few hundred milliseconds)
then still ends `run` the documented way, with an `error` event of kind cancelled and exit 3,
instead of killing the process silently (`standby` too, once its job has arrived). Other
commands get the default handlers back (and a recorded signal re-delivered) before they start.
"""

from __future__ import annotations

import os
import sys

try:  # the C module: no enum import, so the handler is in place within milliseconds
    import _signal as _sig
except ImportError:  # pragma: no cover - other Pythons
    import signal as _sig

# The parent as early as possible: a client that dies during start-up is still noticed.
_PARENT_AT_START = os.getppid()

_EARLY: list[int] = []  # signal numbers received before the run's own handlers took over
_EARLY_SIGNALS = [getattr(_sig, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(_sig, n)]


def _record_early(signum, _frame) -> None:
    _EARLY.append(signum)


if __name__ == "__main__":
    for _s in _EARLY_SIGNALS:
        _sig.signal(_s, _record_early)

import argparse  # noqa: E402 - after the handlers, on purpose


def _default_signal_handling() -> None:
    """Give a command other than `run` Python's usual signal handlers back, and re-deliver a
    signal that arrived during start-up (so a SIGTERM still ends the doctor)."""
    import signal

    for s in _EARLY_SIGNALS:
        if signal.getsignal(s) is _record_early:
            signal.signal(s, signal.default_int_handler if s == signal.SIGINT else signal.SIG_DFL)
    for s in _EARLY[:1]:
        signal.raise_signal(s)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] not in (["run"], ["standby"]):
        _default_signal_handling()
    if argv[:1] == ["farm"]:  # `python -m backend farm run JOB_DIR...` (backend/farm/, needs Ray)
        from .farm.cli import main as farm_main

        return farm_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m backend", description="Animate Anything generator process (one job per run)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the job in a job directory; JSON events on stdout")
    p_run.add_argument("job", help="the job directory (holds job.json)")
    p_standby = sub.add_parser(
        "standby", help='warm up, then run the job folder named by one line {"job": PATH} on stdin'
    )
    p_standby.add_argument(
        "--warm",
        default="preview",
        choices=("preview", "guided", "animateanything"),
        help="also import what this mode needs (torch, diffusers) before the job comes",
    )
    p_standby.add_argument(
        "--frame-size",
        type=_frame_size,
        metavar="WxH",
        help="the size of the job expected: grow the heap ahead by what a preview of that size uses",
    )
    devices = ("auto", "cpu", "cuda", "mps")
    for p in (p_run, p_standby):
        p.add_argument("--device", default="auto", choices=devices, help="override job.json's device")
        p.add_argument(
            "--watch-parent", action="store_true", help="cancel the run when the process that started it ends"
        )
    sub.add_parser("farm", help="run job folders on a Ray cluster (python -m backend farm run --help)")
    p_doc = sub.add_parser("doctor", help="report Python, packages, devices and models in plain words")
    p_doc.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p_doc.add_argument(
        "--models", nargs="*", default=[], metavar="DIR", help="extra folders to look for models in"
    )
    args = parser.parse_args(argv)
    if args.command in ("run", "standby"):
        from .allocator import keep_freed_memory

        keep_freed_memory()
        if args.command == "standby":
            from .standby import main as standby_main

            return standby_main(
                warm=args.warm,
                device=args.device,
                watch_parent=args.watch_parent,
                parent_pid=_PARENT_AT_START,
                early_signals=_EARLY,
                frame_size=args.frame_size,
            )
        from .runner import run

        return run(
            args.job,
            device=args.device,
            watch_parent=args.watch_parent,
            parent_pid=_PARENT_AT_START,
            early_signals=_EARLY,
        )
    from .doctor import main as doctor_main

    return doctor_main(as_json=args.json, model_dirs=args.models)


def _frame_size(text: str) -> tuple[int, int]:
    """Text "WxH" -> (W, H), positive integers (argparse reports anything else)."""
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 720x480")
    return int(w), int(h)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.argv[1:2] in (["run"], ["standby"]):
        # The run has closed and renamed all it wrote and its events are out: skip the
        # interpreter's teardown (0.1-0.2 s of freeing numba's, PyAV's and the frames' objects,
        # the last serial step of every run). Not for farm: Ray shuts down in its atexit hook.
        os._exit(code)
    sys.exit(code)
