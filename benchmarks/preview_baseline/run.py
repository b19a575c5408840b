"""The preview generator as it was before issue 14 (the baseline of benchmarks/bench_preview.py).

    python benchmarks/preview_baseline/run.py JOB

Runs mode preview on JOB the way `python -m backend run JOB` did: glibc's mmap threshold raised
(ctypes.util.find_library), stage 1 (unified flow) for all frames at once, then every frame splatted
(float64, two sparse products) and filled (whole frame) on ctx.workers threads into one
(F, H, W, 3) array, then out/ written from the whole arrays (every PNG, video.mp4, flow.npz through
save_flow, flow.mp4). Prints one JSON line of stage times. Not used by the product.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def keep_freed_memory() -> bool:
    """The allocator tuning of that time: mmap threshold 32 MiB, trim threshold 1 GiB."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc.mallopt(-3, 32 * 1024 * 1024) == 1 and libc.mallopt(-1, 1 << 30) == 1


def write_flow_npz(path, flow):
    import numpy as np

    from backend.flow_file import FLOW_SAVE_LIMIT
    from blender_animate.flowviz import save_flow

    try:
        save_flow(path, flow)
    except ValueError:
        save_flow(path, np.clip(flow, -FLOW_SAVE_LIMIT, FLOW_SAVE_LIMIT))


def write_outputs(partial: Path, frames, flow, ctx) -> dict:
    """Write frames, video, flow and flow video into `partial`; returns the `done` event's outputs
    (paths relative to the job directory, as they will be after the rename to out/).

    The pieces run side by side on a small thread pool (zlib, FFmpeg and numpy release the GIL):
    one task encodes video.mp4, one colours the flow and encodes flow.mp4 (or writes flow PNGs),
    one writes flow.npz, and the PNG frames are spread over the rest."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from backend import mp4
    from backend import outputs as out
    from backend.errors import Cancelled
    from blender_animate import result as contract
    from blender_animate.result import out_path

    partial.mkdir(parents=True, exist_ok=False)
    spec = ctx.spec
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
            mp4.encode_mp4(partial / contract.VIDEO, frames, spec.fps, on_frame=tick)
            files["video"] = out_path(contract.VIDEO)
        except RuntimeError as exc:
            ctx.warn(f"video.mp4 was not written ({exc}); the PNG frames are complete")

    def flow_npz_task():
        write_flow_npz(partial / contract.FLOW_NPZ, flow)
        files["flow"] = out_path(contract.FLOW_NPZ)

    def flow_video_task():
        colors = out.flow_colors(flow, on_frame=check_stop)
        if have_av:
            try:
                mp4.encode_mp4(partial / contract.FLOW_VIDEO, colors, spec.fps, on_frame=tick, fast=True)
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


def main(job_dir: str) -> int:
    keep_freed_memory()
    import numpy as np

    from backend.context import load_context
    from backend.parallel import map_ordered
    from benchmarks.preview_baseline.fill import fill_holes
    from benchmarks.preview_baseline.splat import forward_splat
    from blender_animate.flow import unified_flow

    t0 = time.perf_counter()
    timings = {}
    ctx = load_context(job_dir)
    spec, cond = ctx.spec, ctx.cond
    F, H, W = spec.num_frames, spec.height, spec.width
    uf = unified_flow(
        ctx.depth,
        cond.K,
        cond.c2w,
        cond.tracks,
        cond.track_visible,
        cond.track_radius,
        None,
        fallback_depth=spec.fallback_depth,
        height=H,
        width=W,
    )
    flow, depth = uf.flow, uf.depth
    timings["flow"] = time.perf_counter() - t0
    t = time.perf_counter()
    image = ctx.reference
    frames = np.empty((F, H, W, 3), np.uint8)

    def render(f):
        if f == 0:
            return image
        s = forward_splat(image, flow[f], depth[f], depth[f] > 0, want_depth=True)
        return fill_holes(s.image, s.hole, depth=s.depth, method="background")

    for f, frame in enumerate(map_ordered(render, F, ctx.workers)):
        frames[f] = frame
    timings["render"] = time.perf_counter() - t
    t = time.perf_counter()
    out = Path(job_dir) / "out-baseline"
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    write_outputs(out, frames, flow, ctx)
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
