"""Generate's reference render on Blender's factory scene (cube, light, camera; EEVEE, 1920x1080),
Preview against Final quality, each in the background Blender that Generate starts
(operators/adapter/reference_job.py), and how often the add-on's timer could poll meanwhile.

    .venv/bin/python benchmarks/bench_reference_render.py [--repeat N] [--width 720 --height 480]

Prints a table (wall seconds from start() to the result, the render size, the timer polls); it
asserts nothing. Run it with any bpy environment (.venv, .venv45, .venv52, .venv53).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = "aa_bench_repo"
PACKAGE = f"bl_ext.{REPO}.animate_anything"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--quality", action="append", choices=["PREVIEW", "FINAL"], help="default both")
    args = parser.parse_args(argv)
    import bpy

    addon_utils = importlib.import_module("addon_utils")  # on sys.path once bpy is imported

    folder = tempfile.mkdtemp(prefix="aa_bench_repo_")
    os.symlink(ROOT, Path(folder) / "animate_anything", target_is_directory=True)
    bpy.context.preferences.extensions.repos.new(
        name=REPO, module=REPO, custom_directory=folder, source="USER"
    )
    addon_utils.enable(PACKAGE, default_set=True)
    try:
        bpy.ops.wm.read_homefile(use_factory_startup=True)  # the factory scene, not an empty file
        scene = bpy.context.scene
        job = importlib.import_module(f"{PACKAGE}.operators.adapter.reference_job")
        r = scene.render
        print(
            f"Blender {bpy.app.version_string}, engine {r.engine}, scene {r.resolution_x}x{r.resolution_y} "
            f"at {r.resolution_percentage} %, video {args.width}x{args.height}"
        )
        qualities = args.quality or ["PREVIEW", "FINAL"]
        print(f"{'quality':8} {'run':>3} {'wall s':>8} {'rendered at':>12} {'timer polls':>12}")
        for quality in qualities:
            for i in range(args.repeat):
                t0 = time.perf_counter()
                render = job.ReferenceRender(bpy.context, 1, args.width, args.height, quality=quality).start()
                polls = 0
                try:
                    while (result := render.poll()) is None:
                        polls += 1
                        time.sleep(0.1)  # runs.POLL_INTERVAL: what the add-on's timer does
                finally:
                    render.close()
                wall = time.perf_counter() - t0
                size = f"{result.render_wh[0]}x{result.render_wh[1]}"
                print(f"{quality:8} {i + 1:>3} {wall:8.1f} {size:>12} {polls:>12}")
    finally:
        addon_utils.disable(PACKAGE, default_set=True)
        repos = bpy.context.preferences.extensions.repos
        repos.remove(repos[REPO])
        shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # bpy 4.5 can hang at interpreter exit


if __name__ == "__main__":
    main()
