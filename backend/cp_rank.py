"""One rank of a context-parallel run: `torchrun ... -m backend.cp_rank JOB --partial P --device D`.

Started by backend/parallel_run.py (never by hand: the parent holds the job folder's lock, emitted
`started`, and swaps P in as out/ and emits `done` when rank 0 wrote it). Every rank:
1. Joins the process group torchrun describes (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT):
   gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK.
2. Reads the job and runs the same code as a single-process run (`runner.generate_into`); mode
   guided sees the process group and splits the denoiser's tokens across the ranks
   (backend/runtime/context_parallel.py). Every rank computes the whole video (the split is inside
   the transformer); rank 0 alone emits events (one JSON line each on stdout) and writes P,
   result.json last. The other ranks' stdout goes to stderr.
3. Watches JOB/cancel and SIGTERM/SIGINT like a single run, and the runner's pid
   (ANIMATE_ANYTHING_CP_RUNNER: a killed runner cancels the ranks); cancel within a second or two,
   a rank stuck in a collective ends itself after the watcher's grace with exit 3.
4. A failure: the rank emits an `error` event (kind per backend/errors.py; every rank, see
   main), exit 1/2/3. Ranks the
   parent chose by itself whose memory plan does not hold the whole model on each GPU
   (context_parallel.NeedsOneProcess, agreed by all ranks before any weights load): rank 0 emits a
   `one_process` line, which the parent takes (it is not forwarded) to run the job in one process;
   exit 0. Success: a barrier, exit 0. Every rank leaves with os._exit: no teardown that could wait
   on a stuck peer, and none of torch's gloo destructors, which at interpreter exit can deadlock or
   abort ("terminate called without an active exception").
"""

from __future__ import annotations

import _thread
import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .cancel import CancelState, CancelWatcher
from .errors import EXIT_DONE, report_failure
from .events import Events

RUNNER_ENV = "ANIMATE_ANYTHING_CP_RUNNER"  # the pid of the `python -m backend run` that started us


def _watch_runner(state: CancelState, pid: str, poll: float = 0.5) -> None:
    """Cancel this rank when the runner process `pid` is gone (killed: nobody would swap our output
    in, and its lock no longer keeps a new run out of the folder). The cancel watcher's grace then
    ends a rank stuck in a collective."""
    if not pid.isdigit():
        return

    def loop() -> None:
        while True:
            time.sleep(poll)
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                if state.request("the generator process ended") and state.armed:
                    _thread.interrupt_main(signal.SIGINT)
                return
            except PermissionError:
                pass

    threading.Thread(target=loop, name="runner-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.cp_rank")
    parser.add_argument("job")
    parser.add_argument("--partial", required=True, help="the folder rank 0 writes (the parent swaps it in)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    job_dir = Path(args.job).absolute()

    stream = Events.take_stdout()  # every rank's error goes there (one line: one atomic pipe write)
    events = stream if rank == 0 else Events(open(os.devnull, "wb", buffering=0))  # noqa: SIM115
    state = CancelState()
    watcher = CancelWatcher(state, job_dir / "cancel").start()
    _watch_runner(state, os.environ.get(RUNNER_ENV, ""))
    t0 = time.perf_counter()
    code = EXIT_DONE
    try:
        import torch
        import torch.distributed as dist

        from .context import load_context
        from .runner import generate_into
        from .runtime.context_parallel import NeedsOneProcess
        from .runtime.devices import resolve_device

        device = resolve_device(args.device)
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        state.check()
        ctx = load_context(job_dir, events=events, cancel=state, device=device)
        timings: dict[str, float] = {"load": time.perf_counter() - t0}
        try:
            generate_into(Path(args.partial) if rank == 0 else None, ctx, timings, t0)
        except NeedsOneProcess as exc:
            events.emit("one_process", reason=str(exc))
        state.armed = False  # done: a late cancel is the parent's to judge
        dist.barrier()
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
        # Every rank reports: the first to fail may stop rank 0 (torchrun SIGTERMs the others)
        # before rank 0 reaches its own error; the parent keeps the first error that is no cancel.
        code = report_failure(exc, job_dir, stream)
    finally:
        state.armed = False
        watcher.stop()
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # see step 4 of the module docstring
