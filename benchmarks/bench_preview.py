"""Benchmark: the preview generator end to end vs the cheapest possible warp, in the same run.

    .venv/bin/python benchmarks/bench_preview.py [--width 720 --height 480 --frames 49 --repeat 3]

1. Writes a job like the demo's (textured reference, layered depth, a dolly with a pan, one drag).
2. Runs the real generator process, `python -m backend run JOB`, `--repeat` times: wall time from
   start to exit (imports, flow, splatting, filling, PNGs, video.mp4, flow.npz, flow.mp4), the
   stage times from out/result.json, and the process's peak memory (max RSS).
3. Backward-warps the same reference into the same number of frames with cv2.remap along the same
   flow (maps precomputed: only the warps are timed), the cheapest possible warp.
Prints the best times, the ratio, the peak memory and whether the 5 s goal is met.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.backend.jobs import backend_env, cameras, write_job  # noqa: E402

GOAL_S = 5.0


def make_job(folder: Path, width: int, height: int, frames: int) -> Path:
    c2w, _ = cameras("dolly", frames, height, width, step=0.04)
    c2w[:, 0, 3] = np.linspace(0.0, 0.5, frames)  # and a pan
    cx, cy = width / 2, height / 2
    drag = np.stack([np.linspace(cx, cx + 40, frames), np.linspace(cy, cy - 20, frames)], -1)
    job = write_job(
        folder, width=width, height=height, num_frames=frames, tracks=drag[None].astype(np.float32)
    )
    from blender_animate import job as jobio

    cond = jobio.Conditions.load(job / jobio.CONDITIONS_NPZ)
    cond.c2w = c2w
    cond.save(job / jobio.CONDITIONS_NPZ)
    return job


HIDE_OPTIONAL = """import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in {'cv2', 'scipy', 'av', 'torch'}:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
sys.meta_path.insert(0, _Hide())
"""


def run_generator(job: Path, extra_paths=()) -> tuple[float, dict, float, float]:
    """Wall seconds, result.json timings, peak RSS MiB and CPU seconds (user + system) of the child."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage.ru_maxrss
    cpu_before = usage.ru_utime + usage.ru_stime
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "backend", "run", str(job)],
        cwd=ROOT,
        env=backend_env(list(extra_paths)),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"the generator failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss of children is the max over all waited-for children.
    timings = json.loads((job / "out" / "result.json").read_text())["timings_s"]
    return wall, timings, max(usage.ru_maxrss, before) / 1024.0, usage.ru_utime + usage.ru_stime - cpu_before


def remap_baseline(job: Path) -> float:
    """Seconds to backward-warp the reference into every frame with cv2.remap along the job's flow."""
    import cv2

    from blender_animate.flowviz import load_flow

    ref = cv2.imread(str(job / "reference.png"))
    flow = load_flow(job / "out" / "flow.npz")
    F, H, W, _ = flow.shape
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    maps = [
        (gx - flow[f, ..., 0], gy - flow[f, ..., 1]) for f in range(F)
    ]  # forward flow as an approximation
    out = np.empty((F, H, W, 3), np.uint8)
    t0 = time.perf_counter()
    for f, (mx, my) in enumerate(maps):
        out[f] = cv2.remap(ref, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=720)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--frames", type=int, default=49)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the job here and keep it")
    ap.add_argument(
        "--zero-install",
        action="store_true",
        help="run the generator with OpenCV, scipy, PyAV and torch hidden",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(args.keep or Path(tmp) / "job", args.width, args.height, args.frames)
        extra = []
        if args.zero_install:
            (Path(tmp) / "hide").mkdir()
            (Path(tmp) / "hide" / "sitecustomize.py").write_text(HIDE_OPTIONAL)
            extra = [str(Path(tmp) / "hide")]
        runs = [run_generator(job, extra) for _ in range(args.repeat)]
        if args.zero_install:  # the baseline reads out/flow.npz; PNGs replace the videos
            print("numpy + Pillow only (OpenCV, scipy, PyAV, torch hidden)")
        best = min(runs, key=lambda r: r[0])
        peak = max(r[2] for r in runs)
        remap = min(remap_baseline(job) for _ in range(args.repeat))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"preview, {args.frames} frames {args.width}x{args.height}, "
            f"{os.cpu_count()} cores, load {load:.1f}"
        )
        print(f"  end to end (process start to exit), best of {args.repeat}: {best[0]:.2f} s")
        print(f"    all runs: {', '.join(f'{r[0]:.2f}' for r in runs)} s")
        print(f"    CPU time (user + system) of the best run: {best[3]:.2f} s")
        print(f"    stages of the best run: {best[1]}")
        print(f"  cv2.remap backward warp of the same frames: {remap * 1000:.1f} ms")
        print(f"  ratio end to end / remap: {best[0] / remap:.0f}x")
        render = best[1].get("generate", float("nan"))
        print(f"  ratio generate stage (flow + splat + fill) / remap: {render / remap:.0f}x")
        print(f"  peak memory of the generator process: {peak:.0f} MiB")
        print(f"  goal < {GOAL_S:.0f} s: {'met' if best[0] < GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
