"""Throughput of the farm: N preview jobs on a local Ray cluster with 1 and 2 workers, against the
same jobs run one after another in this process (the runner's `run`, no Ray, no child processes).

Every job is the same preview job (default 8 jobs of 25 frames at 160x120); each run starts from
fresh copies. The jobs run single-threaded (ANIMATE_ANYTHING_THREADS=1) in all three cases, so the
workers, not the job's own threads, are what differs. The cluster's start is timed apart and not
counted in the throughput. Run: .venv/bin/python benchmarks/bench_farm.py [--jobs 8] [--frames 25]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["ANIMATE_ANYTHING_THREADS"] = "1"

from backend.events import Events  # noqa: E402
from backend.farm import cluster  # noqa: E402
from backend.farm.driver import Farm  # noqa: E402
from backend.farm.jobs import load_jobs  # noqa: E402
from backend.runner import run  # noqa: E402
from tests.backend.jobs import write_job  # noqa: E402


def fresh(template: Path, folder: Path, n: int) -> list[Path]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return [Path(shutil.copytree(template, folder / f"job{i:02d}")) for i in range(n)]


def sequential(dirs: list[Path]) -> float:
    t = time.perf_counter()
    for d in dirs:
        assert run(d, events=Events(io.BytesIO())) == 0
    return time.perf_counter() - t


def on_farm(dirs: list[Path], workers: int) -> tuple[float, float]:
    t = time.perf_counter()
    ray = cluster.connect(None, num_cpus=workers, num_gpus=0)
    start = time.perf_counter() - t
    try:
        # Warm the worker processes first (Ray starts them lazily), as a farm in use would be.
        warm = fresh(dirs[0], dirs[0].parent.parent / f"warm{workers}", workers)
        assert Farm(ray, load_jobs(warm), emit=lambda e: None, code_root=ROOT).run() == 0
        t = time.perf_counter()
        assert Farm(ray, load_jobs(dirs), emit=lambda e: None, code_root=ROOT).run() == 0
        return time.perf_counter() - t, start
    finally:
        cluster.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--frames", type=int, default=25)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_farm_"))
    try:
        template = write_job(tmp / "template", width=160, height=120, num_frames=args.frames)
        rows = [("one process, one after another", sequential(fresh(template, tmp / "seq", args.jobs)), None)]
        for workers in (1, 2):
            wall, start = on_farm(fresh(template, tmp / f"farm{workers}", args.jobs), workers)
            rows.append((f"Ray, {workers} worker{'s' * (workers > 1)}", wall, start))
        base = rows[0][1]
        print(f"{args.jobs} preview jobs, {args.frames} frames at 160x120, {os.cpu_count()} CPUs")
        print(f"{'':32s} {'wall s':>8s} {'jobs/s':>8s} {'x sequential':>13s} {'cluster start s':>16s}")
        for name, wall, start in rows:
            extra = f"{start:16.2f}" if start is not None else f"{'-':>16s}"
            print(f"{name:32s} {wall:8.2f} {args.jobs / wall:8.2f} {base / wall:13.2f} {extra}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
