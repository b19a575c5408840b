"""Benchmark: the preview generator against cv2.remap and against its previous implementation.

    .venv/bin/python benchmarks/bench_preview.py [--sizes 720x480x49,1280x720x49,1920x1080x97]
        [--repeat 2] [--stage-frames 8] [--zero-install]

For each size (width x height x frames), one job like the demo's (textured reference, layered depth,
a dolly with a pan, one drag), and in the same run, baseline and new alternating:
1. End to end, real processes: the generator (`python -m backend run JOB`, 2 threads) and the
   implementation it replaced (benchmarks/preview_baseline/run.py: stage 1 whole, float64
   splatting, whole-frame fill, every frame held, every output from whole arrays). Wall time,
   CPU time (user + system) and peak RSS of each child (os.wait4), `--repeat` times interleaved.
2. Thread scaling of the generator: ANIMATE_ANYTHING_THREADS=1 against 2, and 2 threads with
   glibc's default malloc (ANIMATE_ANYTHING_MALLOC=default: the allocator settings off). Cold
   (`python -m backend run`) and warm: on a standby generator (`python -m backend standby
   --frame-size WxH`, what the add-on keeps ready: its heap grown ahead for the job's frames),
   timed from handing it the job, also without the reserve and with 1 thread pinned to 1 core
   (one thread then does everything: the frames, x264 and the writing).
3. Memory growth: at the last size, also the generator on half the frames: peak RSS per extra
   frame against the size of one output frame.
4. Per stage, in this process on one thread, on `--stage-frames` frames spread over the video
   (old and new alternating frame by frame): stage-1 flow (whole-video call per frame vs one
   frame), splatting and filling (the baseline vs the numba kernels, and the numpy paths beside
   them), PNG (level 1 vs 0), x264 superfast vs ultrafast at CRF 18 (with PSNR against the
   frames; wall time: x264 runs threads of its own), and cv2.remap of the same frame on one
   OpenCV thread (cv2.setNumThreads(1): thread CPU time would miss the work of its pool): ms per
   frame and x remap.
Prints tables with the load average; asserts nothing. The machine may be shared: ratios of the
alternating runs are what to compare, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.backend.jobs import backend_env, cameras, write_job  # noqa: E402

HIDE_OPTIONAL = """import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {'cv2', 'scipy', 'av', 'torch', 'numba'}:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, _Hide())
"""


def make_job(folder: Path, width: int, height: int, frames: int) -> Path:
    c2w, _ = cameras("dolly", frames, height, width, step=0.04 * 49 / max(frames, 1))
    c2w[:, 0, 3] = np.linspace(0.0, 0.5, frames)  # and a pan
    cx, cy = width / 2, height / 2
    drag = np.stack([np.linspace(cx, cx + 40, frames), np.linspace(cy, cy - 20, frames)], -1)
    # drag_regions "discs": the drag moves a disc of pixels, as in the baseline's stage 1 (an
    # object drag on this picked image would add the segmentation of issue 12, backend.segment,
    # to the new side only; not part of this comparison).
    job = write_job(
        folder,
        width=width,
        height=height,
        num_frames=frames,
        tracks=drag[None].astype(np.float32),
        drag_regions="discs",
    )
    from blender_animate import job as jobio

    cond = jobio.Conditions.load(job / jobio.CONDITIONS_NPZ)
    cond.c2w = c2w
    cond.save(job / jobio.CONDITIONS_NPZ)
    return job


def run_child(argv: list[str], env: dict) -> dict:
    """Run a child to its end: wall s, CPU s (user + system) and peak RSS MiB of that child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{out[-2000:]!r}\n{err.decode()[-4000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024.0}


def generator(job: Path, env: dict) -> dict:
    r = run_child([sys.executable, "-m", "backend", "run", str(job)], env)
    r["timings"] = json.loads((job / "out" / "result.json").read_text())["timings_s"]
    return r


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (/proc, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_generator(job: Path, env: dict, cores: set[int] | None = None, reserve: bool = True) -> dict:
    """The job on a standby generator (`python -m backend standby --frame-size WxH`, what the
    add-on keeps ready; `reserve` False: without --frame-size): wall s from handing it the job to
    its exit, its CPU s in that time, its peak RSS. `cores`: the CPUs it may run on
    (sched_setaffinity before it starts), None: all."""
    pin = None if cores is None else (lambda: os.sched_setaffinity(0, cores))
    from blender_animate.addon.standby import warm_arguments
    from blender_animate.job import read_spec

    spec = read_spec(job)
    size = (spec.width, spec.height) if reserve else None
    argv = [sys.executable, "-m", "backend", "standby", *warm_arguments(None, size)]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=pin,
    )
    if json.loads(proc.stdout.readline()).get("event") != "ready":
        raise SystemExit(f"{argv}: no ready line")
    time.sleep(0.2)  # settled: the warm-up's last pages written
    cpu0, t0 = _cpu_s(proc.pid), time.perf_counter()
    proc.stdin.write((json.dumps({"job": str(job)}) + "\n").encode())
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed:\n{out[-2000:]!r}\n{err.decode()[-4000:]}")
    r = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime - cpu0, "rss": usage.ru_maxrss / 1024.0}
    r["timings"] = json.loads((job / "out" / "result.json").read_text())["timings_s"]
    return r


def baseline(job: Path, env: dict) -> dict:
    return run_child(
        [sys.executable, str(ROOT / "benchmarks" / "preview_baseline" / "run.py"), str(job)], env
    )


def stages(job: Path, n_frames: int) -> dict:
    """Per-stage thread CPU ms per frame, old and new alternating (see the module docstring)."""
    from backend.allocator import keep_freed_memory

    keep_freed_memory()  # the setting the generator runs with (the baseline's differs little here)
    import cv2

    cv2.setNumThreads(1)  # one thread, as every stage here (thread_time counts this thread only)

    from backend import mp4
    from backend import outputs as out
    from backend.context import load_context
    from backend.modes.preview import flow_plan, frame_flow
    from backend.preview import fill as new_fill
    from backend.preview import pushpull
    from backend.preview import splat as new_splat
    from benchmarks.preview_baseline import fill as old_fill
    from benchmarks.preview_baseline import splat as old_splat
    from blender_animate.flow import unified_flow

    ctx = load_context(job)
    spec, c = ctx.spec, ctx.cond
    F, H, W = spec.num_frames, spec.height, spec.width
    clock = time.thread_time
    acc: dict[str, list[float]] = {}

    def timed(name, fn, *args, wall=False, **kw):
        tick = time.perf_counter if wall else clock
        t = tick()
        r = fn(*args, **kw)
        acc.setdefault(name, []).append((tick() - t) * 1000)
        return r

    def numpy_fill(*args, **kw):  # the fill without its numba kernel (Blender's own Python)
        kernel, pushpull.compiled_kernel = pushpull.compiled_kernel, lambda: None
        try:
            return new_fill.fill_holes(*args, **kw)
        finally:
            pushpull.compiled_kernel = kernel

    t = clock()
    whole = unified_flow(
        ctx.depth, c.K, c.c2w, c.tracks, c.track_visible, c.track_radius, None, height=H, width=W
    )
    acc["flow old"] = [(clock() - t) * 1000 / F]
    plan = flow_plan(ctx)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    ref_bgr = np.ascontiguousarray(ctx.reference[..., ::-1])
    frames = []
    flow, depth = frame_flow(ctx, plan, 0)  # the kernel's first call (compile or cache load) untimed
    new_splat.forward_splat(ctx.reference, flow, depth, depth > 0, want_depth=True)
    for f in np.linspace(1, F - 1, n_frames).round().astype(int):
        flow, depth = timed("flow new", frame_flow, ctx, plan, int(f))
        front = depth > 0
        args = (ctx.reference, flow, depth, front)
        so = timed("splat old", old_splat.forward_splat, *args, want_depth=True)
        sn = timed("splat new", new_splat.forward_splat, *args, want_depth=True)
        timed("splat numpy", new_splat.forward_splat, *args, want_depth=True, compiled=False)
        timed("fill old", old_fill.fill_holes, so.image, so.hole, depth=so.depth, method="background")
        timed("fill numpy", numpy_fill, sn.image, sn.hole, depth=sn.depth, method="background")
        frame = timed("fill new", new_fill.fill_holes, sn.image, sn.hole, depth=sn.depth, method="background")
        mx, my = gx - flow[..., 0], gy - flow[..., 1]
        timed("cv2.remap", cv2.remap, ref_bgr, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frames.append(frame)
    del whole
    with tempfile.TemporaryDirectory() as tmp:
        for level in (1, 0):
            out.PNG_COMPRESS_LEVEL = level
            for i, frame in enumerate(frames):
                timed(f"PNG level {level}", out.save_png, Path(tmp) / f"{level}-{i}.png", frame)
        out.PNG_COMPRESS_LEVEL = 1
        psnr = {}
        for preset in ("superfast", "ultrafast"):
            mp4.X264_OPTIONS = {"preset": preset, "crf": "18"}
            path = Path(tmp) / f"{preset}.mp4"
            writer = mp4.Mp4Writer(path, W, H, spec.fps)
            for frame in frames:  # wall time: x264 encodes on threads of its own
                timed(f"x264 {preset}", writer.write, frame, wall=True)
            t = time.perf_counter()
            writer.close()
            acc[f"x264 {preset}"][-1] += (time.perf_counter() - t) * 1000  # the flush: the last frame's
            psnr[preset] = (_psnr(path, frames), path.stat().st_size / len(frames) / 1000)
    return {k: float(np.median(v)) for k, v in acc.items()} | {"psnr": psnr}


def _psnr(path: Path, frames: list[np.ndarray]) -> float:
    import av

    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mse = np.mean([np.mean((d.astype(np.float64) - f) ** 2) for d, f in zip(decoded, frames)])
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


RUNS = (
    "baseline",
    "new",
    "new 1 thread",
    "new default malloc",
    "warm",
    "warm no reserve",
    "warm 1 thread",
    "warm 1 thread 1 core",
)


def bench_size(width: int, height: int, frames: int, args, tmp: Path, last: bool) -> dict:
    job = make_job(tmp / f"job{width}x{height}x{frames}", width, height, frames)
    extra = []
    if args.zero_install:
        (tmp / "hide").mkdir(exist_ok=True)
        (tmp / "hide" / "sitecustomize.py").write_text(HIDE_OPTIONAL)
        extra = [str(tmp / "hide")]
    env2 = backend_env(extra) | {"ANIMATE_ANYTHING_THREADS": "2"}
    env1 = env2 | {"ANIMATE_ANYTHING_THREADS": "1"}
    env_malloc = env2 | {"ANIMATE_ANYTHING_MALLOC": "default"}
    runs: dict[str, list[dict]] = {k: [] for k in RUNS}
    for _ in range(args.repeat):  # interleaved: a load change hits both sides alike
        runs["baseline"].append(baseline(job, env2))
        runs["new"].append(generator(job, env2))
        runs["new 1 thread"].append(generator(job, env1))
        runs["new default malloc"].append(generator(job, env_malloc))
        runs["warm"].append(warm_generator(job, env2))
        runs["warm no reserve"].append(warm_generator(job, env2, reserve=False))
        runs["warm 1 thread"].append(warm_generator(job, env1))
        runs["warm 1 thread 1 core"].append(warm_generator(job, env1, cores={min(os.sched_getaffinity(0))}))
    res = {"runs": runs}
    if last:  # memory growth per extra frame (before stages(): a child's peak RSS counts the
        # parent's pages at the fork, and stages() grows this process)
        half = make_job(tmp / f"half{width}x{height}", width, height, frames // 2)
        res["half"] = (frames // 2, generator(half, env2)["rss"])
    res["stages"] = stages(job, args.stage_frames)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="720x480x49,1280x720x49,1920x1080x97")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stage-frames", type=int, default=8)
    ap.add_argument(
        "--zero-install",
        action="store_true",
        help="run the processes with OpenCV, scipy, PyAV and torch hidden",
    )
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    load0 = os.getloadavg()
    print(f"preview benchmark, {os.cpu_count()} cores, load average at start {load0[0]:.1f} {load0[1]:.1f}")
    from backend.preview.splat import compiled_kernel

    engine = "the numba kernels" if compiled_kernel() else "numpy (numba is not installed)"
    print(f"splat and fill new: {engine}")
    if args.zero_install:
        print("processes with numpy + Pillow only (OpenCV, scipy, PyAV, torch, numba hidden)")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (w, h, n) in enumerate(sizes):
            r = bench_size(w, h, n, args, Path(tmp), last=i == len(sizes) - 1)
            report(w, h, n, r)
    load1 = os.getloadavg()
    print(f"load average at the end {load1[0]:.1f} {load1[1]:.1f}")
    return 0


def _pairs(ratios: list[float]) -> str:
    """The ratios of the alternating runs in order, and their median (the noise is large)."""
    return f"{', '.join(f'{x:.2f}x' for x in ratios)} (median {float(np.median(ratios)):.2f}x)"


def report(w: int, h: int, n: int, r: dict) -> None:
    st, runs = r["stages"], r["runs"]
    best = {k: min(v, key=lambda x: x["wall"]) for k, v in runs.items()}
    remap_video = st["cv2.remap"] * n / 1000  # s for the whole video
    print(
        f"\n{w}x{h}x{n}  (load {os.getloadavg()[0]:.1f}; "
        f"cv2.remap of the {n} frames: {remap_video * 1000:.0f} ms)"
    )
    print("  end to end (process), best of the alternating runs: wall s | CPU s | peak RSS MiB")
    for k in RUNS:
        walls = ", ".join(f"{x['wall']:.2f}" for x in runs[k])
        b = best[k]
        print(f"    {k:20s} {b['wall']:7.2f} | {b['cpu']:7.2f} | {b['rss']:7.0f}   (all: {walls})")
    print(f"    baseline / new, end to end: {best['baseline']['wall'] / best['new']['wall']:.2f}x")
    print(f"    baseline / warm, end to end: {best['baseline']['wall'] / best['warm']['wall']:.2f}x")
    for label, one, two in (
        ("threads, cold: 1 thread / 2 threads", "new 1 thread", "new"),
        ("threads, warm (standby): 1 thread / 2 threads", "warm 1 thread", "warm"),
        ("cores, warm: 1 thread on 1 core / 2 threads on 2 cores", "warm 1 thread 1 core", "warm"),
    ):
        ratios = [a["wall"] / b["wall"] for a, b in zip(runs[one], runs[two])]
        print(f"    {label}, pairs: {_pairs(ratios)}")
    for label, a, b in (
        ("allocator: default malloc / tuned", "new default malloc", "new"),
        ("standby heap: no reserve / reserved (--frame-size)", "warm no reserve", "warm"),
    ):
        ratios = [x["wall"] / y["wall"] for x, y in zip(runs[a], runs[b])]
        print(f"    {label}, pairs: {_pairs(ratios)}")
    t = best["new"]["timings"]
    gen = t.get("generate", 0) + t.get("frames", 0)
    print(f"    new process stages (result.json): {t}")
    print(f"    generate + stream (flow, splat, fill, encode) / remap: {gen / remap_video:.0f}x")
    if "half" in r:
        n2, rss2 = r["half"]
        per = (best["new"]["rss"] - rss2) / (n - n2)
        print(
            f"    memory: {n2} frames {rss2:.0f} MiB, {n} frames {best['new']['rss']:.0f} MiB: "
            f"{per:.2f} MiB per extra frame (one output frame: {w * h * 3 / 2**20:.2f} MiB)"
        )
    print("  per stage, one thread, median ms per frame (x cv2.remap of that frame)")
    remap = st["cv2.remap"]
    for old, new in (
        ("flow old", "flow new"),
        ("splat old", "splat new"),
        ("splat numpy", "splat new"),
        ("fill old", "fill new"),
        ("fill numpy", "fill new"),
        ("PNG level 1", "PNG level 0"),
        ("x264 superfast", "x264 ultrafast"),
    ):
        print(
            f"    {old:15s} {st[old]:8.1f} ({st[old] / remap:5.1f}x)   {new:15s} {st[new]:8.1f} "
            f"({st[new] / remap:5.1f}x)   {st[old] / st[new]:.2f}x"
        )
    gen_old = st["flow old"] + st["splat old"] + st["fill old"]
    gen_new = st["flow new"] + st["splat new"] + st["fill new"]
    print(
        f"    flow + splat + fill: old {gen_old:.1f} ms ({gen_old / remap:.0f}x remap), new {gen_new:.1f} ms "
        f"({gen_new / remap:.0f}x remap): {gen_old / gen_new:.2f}x"
    )
    p = st["psnr"]
    print(
        "    x264 CRF 18 PSNR and size: "
        + ", ".join(f"{k} {db:.2f} dB, {kb:.0f} kB a frame" for k, (db, kb) in p.items())
    )


if __name__ == "__main__":
    sys.exit(main())
