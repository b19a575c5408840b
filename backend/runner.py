"""`python -m backend run JOB`: validate, run the mode, write out/ atomically, report events.

Steps of a run:
1. Claim stdout for events, install the cancel watcher (SIGTERM/SIGINT/SIGHUP, `JOB/cancel`).
2. Validate and read the job (`load_context`): a bad job ends with `error` kind invalid_job, exit 2.
3. `started`; remove the previous `out/` and partial folders left by dead runs.
4. Run `backend.modes.<mode>.generate(ctx)` and check what it returns.
5. Write everything into `JOB/.out-partial-<pid>/`, result.json last, then rename it to `JOB/out`.
6. `done` with the output paths (relative to the job directory), exit 0.
Any failure becomes one `error` event (kind, message, hint) and exit 1/2/3; the partial folder is
removed, so a failed, cancelled or killed run never leaves an `out/result.json`.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

from blender_animate import result as contract
from blender_animate.result import PARTIAL_PREFIX, out_path

from .cancel import CancelState, CancelWatcher
from .errors import DEFAULT_HINTS, EXIT_CANCELLED, EXIT_DONE, Cancelled, classify, exit_code
from .events import Events


def run(
    job_dir: str | os.PathLike,
    *,
    device: str = "auto",
    watch_parent: bool = False,
    parent_pid: int | None = None,
    events=None,
) -> int:
    """Run one job; returns the process exit code (0 done, 1 failed, 2 invalid job, 3 cancelled)."""
    job_dir = Path(job_dir).absolute()
    events = events if events is not None else Events.take_stdout()
    state = CancelState()
    partial = job_dir / f"{PARTIAL_PREFIX}{os.getpid()}"

    def emergency(reason: str) -> None:
        # Watcher thread, main thread stuck: say why, remove what is half-written, then os._exit(3).
        events.emit(
            "error",
            final=True,
            timeout=0.5,
            kind="cancelled",
            message=f"cancelled ({reason})",
            hint=DEFAULT_HINTS["cancelled"],
        )
        shutil.rmtree(partial, ignore_errors=True)

    watcher = CancelWatcher(
        state, job_dir / "cancel", emergency=emergency, watch_parent=watch_parent, parent_pid=parent_pid
    )
    watcher.start()
    code = EXIT_DONE
    try:
        try:
            _run(job_dir, partial, device, events, state)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
            failure = classify(exc)
            if failure.kind == "internal":
                traceback.print_exc(file=sys.stderr)
            events.emit("error", final=True, kind=failure.kind, message=failure.message, hint=failure.hint)
            code = exit_code(failure.kind)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    except Cancelled as exc:  # a cancel that arrived while the failure above was being reported
        events.emit("error", final=True, kind="cancelled", message=exc.message, hint=exc.hint)
        shutil.rmtree(partial, ignore_errors=True)
        code = EXIT_CANCELLED
    finally:
        state.armed = False
        watcher.stop()
    return code


def _run(job_dir: Path, partial: Path, device: str, events: Events, state: CancelState) -> None:
    from .context import load_context
    from .modes import load_mode

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # 2. Validate and read the job (a cancel file already there cancels at once).
    if (job_dir / "cancel").exists():
        state.request("cancel file")
    state.check()
    ctx = load_context(job_dir, events=events, cancel=state, device=device)
    spec = ctx.spec
    events.emit("started", job=str(job_dir), mode=spec.mode, pid=os.getpid())
    # 3. Nothing from an earlier run may look like this run's result.
    _remove_stale_outputs(job_dir)
    timings["load"] = time.perf_counter() - t0

    # 4. Generate.
    t = time.perf_counter()
    mode = load_mode(spec.mode)
    result = mode.generate(ctx).check(spec.num_frames, spec.height, spec.width)
    timings["generate"] = time.perf_counter() - t
    ctx.check_cancel()

    # 5. Write into the partial folder; result.json last; rename.
    t = time.perf_counter()
    outputs = write_outputs(partial, result, ctx)
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    payload = {
        "schema_version": contract.SCHEMA_VERSION,
        "mode": spec.mode,
        "width": spec.width,
        "height": spec.height,
        "num_frames": spec.num_frames,
        "fps": spec.fps,
        "outputs": outputs,
        "warnings": list(ctx.warnings),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "info": result.info,
        "generator": _environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    contract.write_result(partial, payload, default=_json_default)
    ctx.check_cancel()
    state.armed = False  # from here on the run completes; a late cancel is ignored
    os.replace(partial, job_dir / contract.OUT_DIR)
    events.emit("done", final=True, outputs=outputs)


def write_outputs(partial: Path, result, ctx) -> dict:
    """Write frames, video, flow and flow video into `partial`; returns the `done` event's outputs
    (paths relative to the job directory, as they will be after the rename to out/).

    The pieces run side by side on a small thread pool (zlib, FFmpeg and numpy release the GIL):
    one task encodes video.mp4, one colours the flow and encodes flow.mp4 (or writes flow PNGs),
    one writes flow.npz, and the PNG frames are spread over the rest."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from . import outputs as out

    partial.mkdir(parents=True, exist_ok=False)
    frames, flow, spec = result.frames, result.flow, ctx.spec
    n = len(frames)
    files = {"video": None, "frames": out_path(contract.FRAMES_DIR), "flow": None, "flow_video": None}
    have_av = out.have_pyav()
    if not have_av:
        ctx.warn(
            "PyAV is not installed, so out/ holds PNG frames and no mp4 (Blender imports the frames as a "
            "sequence); install the generator environment for video.mp4 and flow.mp4"
        )
    stop = threading.Event()
    lock = threading.Lock()
    total = n * (1 + int(have_av) + int(flow is not None))
    done = [0]

    def check_stop(_i=None):
        if stop.is_set():
            raise Cancelled("stopped")

    def tick(_i=None):
        check_stop()
        with lock:
            done[0] += 1
            step = done[0]
        if step % max(1, total // 8) == 0 or step == total:
            # Events are thread-safe; cancellation is checked in the main thread below.
            if ctx.events is not None:
                ctx.events.emit(
                    "progress", stage="write", step=step, total=total, message="writing frames and videos"
                )

    def video_task():
        try:
            out.encode_mp4(partial / contract.VIDEO, frames, spec.fps, on_frame=tick)
            files["video"] = out_path(contract.VIDEO)
        except RuntimeError as exc:
            ctx.warn(f"video.mp4 was not written ({exc}); the PNG frames are complete")

    def flow_npz_task():
        out.write_flow_npz(partial / contract.FLOW_NPZ, flow)
        files["flow"] = out_path(contract.FLOW_NPZ)

    def flow_video_task():
        colors = out.flow_colors(flow, on_frame=check_stop)
        if have_av:
            try:
                out.encode_mp4(partial / contract.FLOW_VIDEO, colors, spec.fps, on_frame=tick, fast=True)
                files["flow_video"] = out_path(contract.FLOW_VIDEO)
                return
            except RuntimeError:
                pass
        out.write_png_sequence(partial / contract.FLOW_FRAMES_DIR, colors, on_frame=tick)
        files["flow_frames"] = out_path(contract.FLOW_FRAMES_DIR)

    (partial / contract.FRAMES_DIR).mkdir()

    def png_task(i: int):
        check_stop()
        out.save_png(partial / contract.FRAMES_DIR / contract.frame_name(i), frames[i])
        tick()

    pool = ThreadPoolExecutor(max_workers=max(2, ctx.workers), thread_name_prefix="write")
    try:
        futures = []
        if have_av:
            futures.append(pool.submit(video_task))
        if flow is not None:
            futures.append(pool.submit(flow_video_task))
            futures.append(pool.submit(flow_npz_task))
        futures += [pool.submit(png_task, i) for i in range(n)]
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
            ctx.check_cancel()
            for fut in finished:
                fut.result()  # re-raise a task's failure here
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    files["result"] = out_path(contract.RESULT_JSON)
    return files


def _remove_stale_outputs(job_dir: Path) -> None:
    """Remove `out/` of an earlier run, and partial folders whose process is gone (POSIX)."""
    old = job_dir / contract.OUT_DIR
    if old.exists() or old.is_symlink():
        trash = job_dir / f".out-old-{os.getpid()}"
        os.replace(old, trash)  # result.json vanishes at once, the rest is removed after
        shutil.rmtree(trash, ignore_errors=True)
    for prefix in (PARTIAL_PREFIX, ".out-old-"):
        for p in job_dir.glob(prefix + "*"):
            pid = p.name[len(prefix) :]
            if pid.isdigit() and int(pid) != os.getpid() and os.name == "posix" and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _environment() -> dict:
    from importlib import metadata

    versions = {}
    for dist in (
        "numpy",
        "Pillow",
        "opencv-python-headless",
        "opencv-python",
        "scipy",
        "av",
        "torch",
        "diffusers",
    ):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "executable": sys.executable, "packages": versions}


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
