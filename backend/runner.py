"""`python -m backend run JOB`: validate, run the mode, write out/ atomically, report events.

Steps of a run:
1. Claim stdout for events, install the cancel watcher (SIGTERM/SIGINT/SIGHUP, `JOB/cancel`); a
   signal that arrived during start-up (`early_signals`) cancels at once.
2. Take the job folder's lock (`JOB/.run-lock`, flock): while another run holds it this run ends
   with `error` kind busy, exit 2, and touches nothing. A folder that cannot be written ends with
   kind cannot_write. Then remove what dead runs left (`.out-partial-*`, `.out-old-*`: under the
   lock no other run is alive here); the previous `out/` stays until the new one is complete.
3. Validate and read the job (`load_context`): a bad job ends with `error` kind invalid_job, exit 2.
4. `started`.
5. Run `backend.modes.<mode>.generate(ctx)` and check what it returns (`generate_into`; or, when
   `parallel_run.ranks_for(ctx)` > 1, in torchrun ranks whose rank 0 writes step 6's folder).
6. Write everything into `JOB/.out-partial-<pid>/`, result.json last, then swap it in: the
   previous `out/` (a folder, or a stray file or link) is renamed to `.out-old-<pid>`, the partial
   folder to `out`, and the old one is removed.
7. `done` with the output paths (relative to the job directory), exit 0.
Any failure becomes one `error` event (kind, message, hint; `errors.classify`) and exit 1/2/3; the
partial folder is removed, so a failed, cancelled or killed run never leaves an `out/result.json`
of its own, and the previous complete `out/` is still there.
"""

from __future__ import annotations

import functools
import os
import platform
import signal
import sys
import time
from pathlib import Path

from blender_animate import result as contract
from blender_animate.job import LOCK_FILE
from blender_animate.result import PARTIAL_PREFIX, out_path

from .cancel import CancelState, CancelWatcher
from .errors import (
    DEFAULT_HINTS,
    EXIT_CANCELLED,
    EXIT_DONE,
    Cancelled,
    report_failure,
)
from .events import Events
from .job_folder import FolderLock, remove, remove_leftovers, swap_in, writing


def run(
    job_dir: str | os.PathLike,
    *,
    device: str = "auto",
    watch_parent: bool = False,
    parent_pid: int | None = None,
    events=None,
    early_signals=(),
) -> int:
    """Run one job; returns the process exit code (0 done, 1 failed, 2 invalid job or busy, 3
    cancelled). `early_signals`: signal numbers received before this function installed its
    handlers (`python -m backend` records them from its first line): the run is cancelled."""
    job_dir = Path(job_dir).absolute()
    events = events if events is not None else Events.take_stdout()
    state = CancelState()
    partial = job_dir / f"{PARTIAL_PREFIX}{os.getpid()}"
    lock = FolderLock(job_dir / LOCK_FILE)

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
        if lock.held:
            remove(partial)

    watcher = CancelWatcher(
        state, job_dir / "cancel", emergency=emergency, watch_parent=watch_parent, parent_pid=parent_pid
    )
    code = EXIT_DONE
    try:
        try:
            watcher.start()
            for signum in list(early_signals)[:1]:
                state.request(_signal_name(signum))
            _run(job_dir, partial, device, events, state, lock)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one error event
            code = report_failure(exc, job_dir, events)
        finally:
            if lock.held:
                remove(partial)
    except Cancelled as exc:  # a cancel that arrived while the failure above was being reported
        events.emit("error", final=True, kind="cancelled", message=exc.message, hint=exc.hint)
        if lock.held:
            remove(partial)
        code = EXIT_CANCELLED
    finally:
        state.armed = False
        watcher.stop()
        lock.release()
    return code


def _run(
    job_dir: Path, partial: Path, device: str, events: Events, state: CancelState, lock: FolderLock
) -> None:
    from .context import check_job_dir, load_context

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # 2. One run per job folder (a cancel file already there cancels at once).
    check_job_dir(job_dir)
    state.check()
    lock.acquire()
    # What dead runs left (nobody else is alive here now); the previous out/ stays until the new
    # one is complete (one caught in a killed run's swap is put back).
    with writing(job_dir):
        remove_leftovers(job_dir)
    if (job_dir / "cancel").exists():
        state.request("cancel file")
    state.check()
    # 3. Validate and read the job.
    ctx = load_context(job_dir, events=events, cancel=state, device=device)
    spec = ctx.spec
    from .parallel_run import ranks_for, run_ranks

    ranks = ranks_for(ctx)  # a bad ANIMATE_ANYTHING_CP is refused before `started`
    events.emit(
        "started", job=str(job_dir), mode=spec.mode, pid=os.getpid(), width=spec.width, height=spec.height
    )
    timings["load"] = time.perf_counter() - t0

    # 5-6. Generate and write into the partial folder, result.json last: in this process, or in
    # several torchrun ranks (context parallelism, backend/parallel_run.py; rank 0 writes).
    outputs = run_ranks(job_dir, partial, ranks, device, events, state) if ranks > 1 else None
    if outputs is None:  # one process (also when automatic ranks handed the job back)
        outputs = generate_into(partial, ctx, timings, t0)
    ctx.check_cancel()
    state.armed = False  # from here on the run completes; a late cancel is ignored
    with writing(job_dir):
        swap_in(partial, job_dir)
    events.emit("done", final=True, outputs=outputs)


def generate_into(partial: Path | None, ctx, timings: dict, t0: float) -> dict | None:
    """Run the job's mode on `ctx` and write its outputs into `partial`, result.json last; returns
    the `done` event's outputs. `timings` (seconds) gets "generate", "write", "total" (from `t0`,
    a time.perf_counter() value). `partial` None: generate only, write nothing, return None (the
    ranks other than 0 of a context-parallel run, backend/cp_rank.py)."""
    from .modes import load_mode

    spec = ctx.spec
    t = time.perf_counter()
    mode = load_mode(spec.mode)
    result = mode.generate(ctx).check(spec.num_frames, spec.height, spec.width)
    timings["generate"] = time.perf_counter() - t
    ctx.check_cancel()
    if partial is None:
        return None
    job_dir = ctx.job_dir
    t = time.perf_counter()
    with writing(job_dir):
        outputs = write_outputs(partial, result, ctx, timings)
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
        "generator": environment(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with writing(job_dir):
        contract.write_result(partial, payload, default=_json_default)
    return outputs


def write_outputs(partial: Path, result, ctx, timings: dict | None = None) -> dict:
    """Write frames, video, flow and flow video into `partial`; returns the `done` event's outputs
    (paths relative to the job directory, as they will be after the rename to out/).

    One pass over the frames in order (whole arrays or a FrameStream: `result.stream()`; a stream
    makes its frames during this pass, progress stage `render`): each frame is converted for the
    encoders on the thread that made it (to_yuv420, FlowFileWriter.encode), then, here, checked,
    encoded into video.mp4 (PyAV), written as a PNG (on a small thread pool: zlib releases the
    GIL) when there is no video or ANIMATE_ANYTHING_PNG=1 asks for them (the import uses the mp4),
    and its flow appended to flow.npz, whose range is taken as it goes. Then (stage `write`) flow.mp4, or
    flow PNGs without an H.264 encoder, from flow.npz read back (flow_file.FlowFrames: a memory map),
    each frame read, coloured with the whole video's range, converted and encoded on the pool (one
    run of frames per thread, joined: mp4.encode_in_parts). A few frames are held at a time,
    whatever the frame count. `timings` gets "frames" and "flow_video" (seconds)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from . import flow_file as flows
    from . import mp4
    from . import outputs as out
    from .modes import check_frame
    from .parallel import map_ordered

    partial.mkdir(parents=True, exist_ok=False)
    spec = ctx.spec
    F, H, W = spec.num_frames, spec.height, spec.width
    stream = result.stream(ctx.workers)
    files = {"video": None, "frames": None, "flow": None, "flow_video": None}
    have_av = out.have_pyav()
    if not have_av:
        ctx.warn(
            "PyAV is not installed, so out/ holds PNG frames and no mp4 (Blender imports the frames as a "
            "sequence); install the generator environment for video.mp4 and flow.mp4"
        )
    timings = {} if timings is None else timings
    video = flow_file = pool = None
    try:
        t = time.perf_counter()
        if have_av:
            try:
                # Frames made on the pool: its threads are the parallelism, x264 takes one (no gain
                # in wall time from more while they are busy, for ~30 % more CPU).
                threads = 1 if stream.workers > 1 else ctx.encoder_threads
                video = mp4.Mp4Writer(partial / contract.VIDEO, W, H, spec.fps, threads=threads)
            except RuntimeError as exc:
                ctx.warn(f"video.mp4 was not written ({exc}); the PNG frames are complete")
        png = out.png_frames_wanted(video is not None)
        if png:
            (partial / contract.FRAMES_DIR).mkdir()
            pool = ThreadPoolExecutor(max_workers=max(1, ctx.workers), thread_name_prefix="write")
        if stream.has_flow:
            flow_file = flows.FlowFileWriter(partial / contract.FLOW_NPZ, F, H, W)

        def convert(frame, flow):  # on the frame's thread: this one then only writes
            yuv = enc = None
            if video is not None and isinstance(frame, np.ndarray) and frame.shape == (H, W, 3):
                yuv = out.to_yuv420(frame)
            if flow_file is not None and isinstance(flow, np.ndarray) and flow.shape == (H, W, 2):
                enc = flows.FlowFileWriter.encode(flow)
            return frame, flow, yuv, enc

        pending: deque = deque()
        for f, (frame, flow, yuv, enc) in enumerate(stream.frames(ctx, then=convert)):
            check_frame(f, frame, flow, H, W, stream.has_flow)
            if pool is not None:
                png_path = partial / contract.FRAMES_DIR / contract.frame_name(f)
                pending.append(pool.submit(out.save_png, png_path, frame))
                while len(pending) > 2 * max(1, ctx.workers):  # bounded: a few frames in flight
                    pending.popleft().result()
            if video is not None:
                video.write(frame if yuv is None else yuv)
            if flow_file is not None:
                flow_file.write(flow if enc is None else enc)
        while pending:
            ctx.check_cancel()
            pending.popleft().result()
        if video is not None:
            video.close()
            files["video"] = out_path(contract.VIDEO)
        if png:
            files["frames"] = out_path(contract.FRAMES_DIR)
        timings["frames"] = time.perf_counter() - t
        if flow_file is not None:
            t = time.perf_counter()
            flow_file.close()
            files["flow"] = out_path(contract.FLOW_NPZ)
            lut = out.flow_lut(flow_file.max_magnitude)

            def progress(done: int) -> None:  # also checks cancel
                ctx.progress("write", done, F, "writing the flow video")

            # Each frame is read from the file's memory map, coloured (float16 in place) and
            # converted on the pool; flow.mp4 is encoded there too, in one run of frames per thread.
            with flows.FlowFrames(partial / contract.FLOW_NPZ) as frames:

                def colour(f: int):
                    rgb = out.color_flow(frames.read(f), lut)
                    frames.release(f)
                    return rgb

                if video is not None:  # an H.264 encoder
                    pool = pool or ThreadPoolExecutor(
                        max_workers=max(1, ctx.workers), thread_name_prefix="write"
                    )
                    mp4.encode_in_parts(
                        partial / contract.FLOW_VIDEO,
                        W,
                        H,
                        spec.fps,
                        F,
                        lambda f: out.as_encoded(colour(f)),
                        pool,
                        ctx.workers,
                        fast=True,
                        check=ctx.check_cancel,
                        on_frame=progress,
                    )
                    files["flow_video"] = out_path(contract.FLOW_VIDEO)
                else:
                    (partial / contract.FLOW_FRAMES_DIR).mkdir()

                    def png(f: int) -> None:
                        out.save_png(partial / contract.FLOW_FRAMES_DIR / contract.frame_name(f), colour(f))

                    for f, _ in enumerate(map_ordered(png, F, ctx.workers, ctx.check_cancel)):
                        if f % max(1, F // 8) == 0 or f == F - 1:
                            progress(f + 1)
                    files["flow_frames"] = out_path(contract.FLOW_FRAMES_DIR)
            timings["flow_video"] = time.perf_counter() - t
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for writer in (video, flow_file):
            if writer is not None:
                writer.abort()  # a no-op for the ones closed
    files["result"] = out_path(contract.RESULT_JSON)
    return files


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@functools.cache
def environment() -> dict:
    """Python and the versions of the packages a run may use (for result.json)."""
    from importlib import metadata

    versions = {}
    for dist in (
        "numpy",
        "Pillow",
        "opencv-python-headless",
        "opencv-python",
        "scipy",
        "numba",
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
