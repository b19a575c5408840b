"""Time and peak memory of reading the scene in Blender (real bpy): the camera and the drag strokes.

Two measurements, each against a straightforward baseline in the same run:
    camera    operators.adapter.scene_camera.read_camera for 49 frames of a camera parented to an
              animated empty, with a TRACK_TO constraint on an animated target and an animated lens.
              Baseline: per frame scene.frame_set + evaluated_depsgraph_get(), matrix_world and the
              camera data read element by element into Python lists, scale removed and the axes
              flipped with per-element Python loops, K from the lens in Python (same numbers).
    strokes   operators.adapter.scene_strokes.collect_strokes + strokes_to_drags for one grease pencil
              object holding 100 strokes x 50 points, tracks over 49 frames.
              Baseline: every point read through Python attribute access (stroke.points[j].position,
              .radius, .delta_time) instead of foreach_get, transformed to world space point by
              point with mathutils, projected point by point in Python, then the same build_tracks.
Times: best of --repeat runs. Peak memory: tracemalloc above the memory held before the call, in a
separate run (bpy's own C allocations are not traced; numpy's and Python's are).
The extension is loaded the way tests/blender/conftest.py loads it (a temporary extension repository).
Run: .venv/bin/python benchmarks/bench_scene_read.py [--repeat 5]   (bpy 5.0)
     .venv45/bin/python benchmarks/bench_scene_read.py              (bpy 4.5; leaves with os._exit)
"""

from __future__ import annotations

import argparse
import gc
import importlib
import math
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXT_ID = "animate_anything"
REPO_MODULE = "aa_bench_repo"
PACKAGE = f"bl_ext.{REPO_MODULE}.{EXT_ID}"

F, STROKES, POINTS = 49, 100, 50
W, H = 720, 480


def load_extension(bpy, folder: str):
    """Enable the repository as user extension `PACKAGE` (as tests/blender/conftest.py does)."""
    import addon_utils

    os.symlink(ROOT, Path(folder) / EXT_ID, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    if repos.get(REPO_MODULE) is None:
        repos.new(name=REPO_MODULE, module=REPO_MODULE, custom_directory=folder, source="USER")
    if addon_utils.enable(PACKAGE, default_set=True) is None:
        raise RuntimeError(f"could not enable {PACKAGE}")


def unload_extension(bpy):
    import addon_utils

    addon_utils.disable(PACKAGE, default_set=True)
    repos = bpy.context.preferences.extensions.repos
    repo = repos.get(REPO_MODULE)
    if repo is not None:
        repos.remove(repo)


def aa(name):
    return importlib.import_module(f"{PACKAGE}.{name}")


# --- the scene ---------------------------------------------------------------------------------------


def build_scene(bpy):
    """An empty file with: a camera parented to an animated empty, tracking an animated target, with an
    animated lens and shift; render 720x480, frames 1..49; a grease pencil object with 100 strokes of
    50 points (radius and delta_time set) in front of the camera."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    scene.frame_start, scene.frame_end = 1, F

    rig = bpy.data.objects.new("Rig", None)
    scene.collection.objects.link(rig)
    for frame, loc, rot in ((1, (0, 0, 0), (0, 0, 0)), (F, (3, -2, 1), (0.1, 0.05, 0.6))):
        rig.location, rig.rotation_euler = loc, rot
        rig.keyframe_insert("location", frame=frame)
        rig.keyframe_insert("rotation_euler", frame=frame)
    target = bpy.data.objects.new("Target", None)
    scene.collection.objects.link(target)
    for frame, loc in ((1, (0, 0, -10)), (F, (2, 1, -9))):
        target.location = loc
        target.keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.parent = rig
    cam.location = (0.2, 0.1, 0.0)
    con = cam.constraints.new("TRACK_TO")
    con.target = target
    con.track_axis, con.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
    for frame, lens, shift in ((1, 30.0, 0.0), (F, 60.0, 0.1)):
        cam.data.lens, cam.data.shift_x = lens, shift
        cam.data.keyframe_insert("lens", frame=frame)
        cam.data.keyframe_insert("shift_x", frame=frame)

    compat = aa("operators.adapter.compat")
    gpd = compat.grease_pencil_data().new("Drags")
    ob = bpy.data.objects.new("Drags", gpd)
    scene.collection.objects.link(ob)
    mat = bpy.data.materials.new("DragsStroke")
    bpy.data.materials.create_gpencil_data(mat)
    gpd.materials.append(mat)
    layer = gpd.layers.new("Lines")
    drawing = layer.frames.new(1).drawing
    drawing.add_strokes([POINTS] * STROKES)
    rng = np.random.default_rng(0)
    start = rng.uniform([-3.0, -2.0], [3.0, 2.0], size=(STROKES, 2))
    steps = rng.normal(0.0, 0.03, size=(STROKES, POINTS, 2)).cumsum(axis=1)
    pos = np.empty((STROKES, POINTS, 3), np.float32)
    pos[..., :2] = start[:, None, :] + steps
    pos[..., 2] = -10.0 + rng.uniform(-0.5, 0.5, size=(STROKES, 1))
    drawing.attributes["position"].data.foreach_set("vector", pos.ravel())

    def put(name, values):
        attr = drawing.attributes.get(name) or drawing.attributes.new(name, "FLOAT", "POINT")
        attr.data.foreach_set("value", np.ascontiguousarray(values, np.float32).ravel())

    put("radius", rng.uniform(0.01, 0.05, size=STROKES * POINTS))
    put("delta_time", np.tile(np.cumsum(rng.uniform(0.01, 0.02, POINTS)) - 0.01, STROKES))
    return scene, ob


# --- baselines (written the obvious way) ---------------------------------------------------------------


def baseline_camera(bpy, frame_start, frame_end, num_frames):
    """Per frame: frame_set, evaluated_depsgraph_get, matrix_world and the camera data element by element."""
    scene = bpy.context.scene
    width = scene.render.resolution_x * scene.render.resolution_percentage // 100
    height = scene.render.resolution_y * scene.render.resolution_percentage // 100
    saved = scene.frame_current
    c2w_all, K_all = [], []
    for i in range(num_frames):
        t = frame_start + i * (frame_end - frame_start) / (num_frames - 1)
        frame = math.floor(t)
        scene.frame_set(frame, subframe=t - frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        ev = scene.camera.evaluated_get(depsgraph)
        mw = ev.matrix_world
        M = [[mw[r][c] for c in range(4)] for r in range(4)]
        norms = [math.sqrt(sum(M[r][c] ** 2 for r in range(3))) for c in range(3)]
        flip = (1.0, -1.0, -1.0)
        c2w = [[M[r][c] / norms[c] * flip[c] for c in range(3)] + [M[r][3]] for r in range(3)]
        c2w.append([0.0, 0.0, 0.0, 1.0])
        cam = ev.data
        render = scene.render
        pax, pay = render.pixel_aspect_x, render.pixel_aspect_y
        fit = cam.sensor_fit
        if fit == "AUTO":
            fit = "HORIZONTAL" if width * pax >= height * pay else "VERTICAL"
            sensor = cam.sensor_width
        else:
            sensor = cam.sensor_width if fit == "HORIZONTAL" else cam.sensor_height
        view = width if fit == "HORIZONTAL" else height * pay / pax
        fx = cam.lens * view / sensor
        fy = fx * pax / pay
        K = [
            [fx, 0.0, width / 2.0 - cam.shift_x * view],
            [0.0, fy, height / 2.0 + cam.shift_y * view * pax / pay],
            [0.0, 0.0, 1.0],
        ]
        c2w_all.append(c2w)
        K_all.append(K)
    scene.frame_set(saved)
    return np.array(c2w_all), np.array(K_all)


def baseline_strokes(bpy, ob, c2w0, K0, times):
    """Per point: Python attribute access, mathutils transform, Python projection; then build_tracks."""
    from mathutils import Matrix, Vector

    tracks_mod = aa("blender_animate.tracks")
    scene = bpy.context.scene
    saved = scene.frame_current
    scene.frame_set(int(times[0]))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ob_eval = ob.evaluated_get(depsgraph)
    polylines, radii, stroke_times = [], [], []
    R = [[float(c2w0[r][c]) for c in range(3)] for r in range(3)]
    t = [float(c2w0[r][3]) for r in range(3)]
    fx, fy, cx, cy = float(K0[0][0]), float(K0[1][1]), float(K0[0][2]), float(K0[1][2])
    for layer in ob.data.layers:
        M = Matrix(ob_eval.matrix_world) @ Matrix(layer.matrix_local)
        scale = sum(v.length for v in M.to_3x3().col) / 3.0
        for frame in layer.frames:
            for stroke in frame.drawing.strokes:
                uv, rs, ts = [], [], []
                for p in stroke.points:
                    x = M @ Vector(p.position)
                    d = [x[k] - t[k] for k in range(3)]
                    xc = [sum(R[k][j] * d[k] for k in range(3)) for j in range(3)]  # R^T (x - t)
                    uv.append((fx * xc[0] / xc[2] + cx, fy * xc[1] / xc[2] + cy))
                    rs.append(fx * p.radius * scale / xc[2])
                    ts.append(p.delta_time)
                polylines.append(np.array(uv))
                radii.append(max(sum(rs) / len(rs), 1.0))
                stroke_times.append(np.array(ts))
    scene.frame_set(saved)
    return tracks_mod.build_tracks(polylines, len(times), radii=radii, width=W, height=H)


# --- measuring ---------------------------------------------------------------------------------------


def timed(fn, repeat):
    best, result = math.inf, None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def peak(fn):
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    top = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return top


def run(bpy, repeat):
    scene_camera = aa("operators.adapter.scene_camera")
    scene_strokes = aa("operators.adapter.scene_strokes")
    scene, ob = build_scene(bpy)
    ctx = bpy.context

    def ours_camera():
        return scene_camera.read_camera(ctx, 1, F, F)

    def base_camera():
        return baseline_camera(bpy, 1, F, F)

    samples = ours_camera()
    c2w_b, K_b = base_camera()
    cam_err = max(np.abs(samples.c2w - c2w_b).max(), np.abs(samples.K - K_b).max())
    c2w0, K0 = samples.c2w[0], samples.K[0]

    def ours_collect():
        return scene_strokes.collect_strokes(ctx, "GREASE_PENCIL", ob, "", 1, F)

    strokes, _ = ours_collect()

    def ours_drags():
        return scene_strokes.strokes_to_drags(strokes, c2w0, K0, W, H, samples.times)

    def ours_strokes():
        s, _ = ours_collect()
        return scene_strokes.strokes_to_drags(s, c2w0, K0, W, H, samples.times)

    def base_strokes():
        return baseline_strokes(bpy, ob, c2w0, K0, samples.times)

    drags = ours_strokes()
    tracks_b, _, radius_b = base_strokes()
    assert drags.tracks.shape == (STROKES, F, 2), drags.tracks.shape
    trk_err = float(np.abs(drags.tracks - tracks_b).max())
    rad_err = float(np.abs(drags.track_radius - radius_b).max())

    rows = [
        ("camera: read_camera", ours_camera, base_camera),
        ("strokes: collect + to_drags", ours_strokes, base_strokes),
        ("  collect_strokes only", ours_collect, None),
        ("  strokes_to_drags only", ours_drags, None),
    ]
    import platform

    print(
        f"bpy {bpy.app.version_string}, Python {platform.python_version()}; camera {F} frames "
        f"(parented, TRACK_TO, animated lens); strokes {STROKES} x {POINTS} points -> {F} frames, "
        f"{W}x{H}; best of {repeat}"
    )
    print(
        f"agreement with the baselines: camera {cam_err:.1e}, tracks {trk_err:.1e} px, "
        f"radius {rad_err:.1e} px"
    )
    head = (
        f"{'what':30s} {'ours ms':>9s} {'baseline ms':>12s} {'ratio':>7s} "
        f"{'ours peak MB':>13s} {'base peak MB':>13s}"
    )
    print(head)
    print("-" * len(head))
    for label, ours, base in rows:
        t, _ = timed(ours, repeat)
        m = peak(ours)
        if base is None:
            print(f"{label:30s} {t * 1e3:9.1f} {'':>12s} {'':>7s} {m / 2**20:13.2f} {'':>13s}")
            continue
        tb, _ = timed(base, repeat)
        mb = peak(base)
        print(
            f"{label:30s} {t * 1e3:9.1f} {tb * 1e3:12.1f} {tb / t:6.1f}x {m / 2**20:13.2f} {mb / 2**20:13.2f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    import bpy

    with tempfile.TemporaryDirectory(prefix="aa_bench_repo_") as folder:
        load_extension(bpy, folder)
        try:
            run(bpy, args.repeat)
        finally:
            unload_extension(bpy)


if __name__ == "__main__":
    code = 0
    try:
        main()
    except BaseException:  # report, then still leave with os._exit (bpy 4.5 can hang at exit)
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
