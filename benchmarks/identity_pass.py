"""The added cost of the object-identity pass and the clean plate (operators/adapter/identity.py)
against the reference render alone (colour + depth, reference.render_passes), measured in the same
run on a small built scene: a ground, a few cubes, a sun and a camera, per engine.

    .venv/bin/python benchmarks/identity_pass.py [--repeat 5] [--width 640 --height 360]
        [--quality PREVIEW|FINAL] [--engine EEVEE --engine CYCLES --engine BLENDER_WORKBENCH]

Each pass is rendered in this process (the background render child runs the same code), once to
warm up (EEVEE compiles its shaders), then `--repeat` times in turn; the table prints median wall
seconds and the ratios identity / reference, plate / reference and everything / reference (what a
job with a drag on an object costs against one without the two passes). Asserts nothing; runs
with any bpy environment (.venv, .venv45, .venv52, .venv53).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = "aa_bench_repo"
PACKAGE = f"bl_ext.{REPO}.animate_anything"


def build_scene(bpy, engine: str, width: int, height: int):
    """Ground + 6 cubes + sun + camera; returns (scene, the cube a drag starts on)."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location, cam.rotation_euler = (0.0, -9.0, 3.0), (1.3, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.rotation_euler = (0.6, 0.2, 0.4)
    scene.collection.objects.link(sun)
    bpy.ops.mesh.primitive_plane_add(size=40.0)
    cubes = []
    for i in range(6):
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(-3.0 + 1.2 * i, 0.5 * (i % 3), 0.5))
        cubes.append(bpy.context.object)
    r = scene.render
    r.engine = engine
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, 100
    return scene, cubes[2]


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(bpy, reference, identity, engine: str, args, work: Path):
    """Median seconds of (reference, identity pass, clean plate) and the objects the ids found."""
    scene, dragged = build_scene(bpy, engine, args.width, args.height)
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
    view_layer = bpy.context.view_layer
    opts = dict(width=args.width, height=args.height, quality=args.quality)
    (work / "plate").mkdir(exist_ok=True)
    found = {}

    def ref():
        reference.render_passes(scene, view_layer, 1, work, **opts)

    def ids():
        found["ids"], found["objects"], _ = identity.render_ids(scene, view_layer, 1, work, **opts)

    def plate():
        reference.render_passes(scene, view_layer, 1, work / "plate", hide=[dragged], **opts)

    for fn in (ref, ids, plate):  # warm up (shaders, kernels)
        fn()
    times = [median_time(fn, args.repeat) for fn in (ref, ids, plate)]
    return (*times, len(found["objects"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--quality", choices=["PREVIEW", "FINAL"], default="PREVIEW")
    parser.add_argument("--engine", action="append", help="default: EEVEE, CYCLES, BLENDER_WORKBENCH")
    args = parser.parse_args(argv)
    import bpy

    addon_utils = importlib.import_module("addon_utils")  # on sys.path once bpy is imported

    folder = tempfile.mkdtemp(prefix="aa_bench_repo_")
    os.symlink(ROOT, Path(folder) / "animate_anything", target_is_directory=True)
    bpy.context.preferences.extensions.repos.new(
        name=REPO, module=REPO, custom_directory=folder, source="USER"
    )
    addon_utils.enable(PACKAGE, default_set=True)
    work = Path(tempfile.mkdtemp(prefix="aa_bench_identity_"))
    try:
        reference = importlib.import_module(f"{PACKAGE}.operators.adapter.reference")
        identity = importlib.import_module(f"{PACKAGE}.operators.adapter.identity")
        compat = importlib.import_module(f"{PACKAGE}.operators.adapter.compat")
        engines = args.engine or [compat.eevee_engine_id(), "CYCLES", "BLENDER_WORKBENCH"]
        engines = [compat.eevee_engine_id() if e == "EEVEE" else e for e in engines]
        W, H = args.width, args.height
        print(
            f"Blender {bpy.app.version_string}, {W}x{H} render = video, quality {args.quality}, "
            f"{args.repeat} repeats (medians, wall seconds, in this process)"
        )
        print(
            f"{'engine':18} {'reference':>9} {'identity':>9} {'plate':>9} "
            f"{'id/ref':>7} {'plate/ref':>9} {'all/ref':>8} {'objects':>7}"
        )
        for engine in engines:
            t_ref, t_ids, t_plate, n = measure(bpy, reference, identity, engine, args, work)
            print(
                f"{engine:18} {t_ref:9.3f} {t_ids:9.3f} {t_plate:9.3f} {t_ids / t_ref:7.2f} "
                f"{t_plate / t_ref:9.2f} {(t_ref + t_ids + t_plate) / t_ref:8.2f} {n:>7}"
            )
    finally:
        addon_utils.disable(PACKAGE, default_set=True)
        repos = bpy.context.preferences.extensions.repos
        repos.remove(repos[REPO])
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    os._exit(0)  # bpy 4.5 can hang at interpreter exit


if __name__ == "__main__":
    main()
