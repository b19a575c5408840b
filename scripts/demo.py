"""The demo: a whole Animate Anything run in Blender, from an empty file to a video.

    bash scripts/demo.sh                 # set-up, then this script
    .venv/bin/python scripts/demo.py [--output DIR] [--frames N] [--width W --height H]

1. Builds an example scene in code: a checker floor, a brick cube, a marbled sphere, a cone with a
   generated image texture, a sun and a sky; a camera keyed to dolly in and orbit; grease-pencil
   strokes that drag the sphere up and to the right (an outline around it and the drag itself).
2. Loads this repository as a real Blender extension (a user extension repository pointing here).
3. Runs `animate_anything.generate` in preview mode: the extension renders the reference frame and
   its depth from the camera in a background Blender (Cycles, Preview quality; the drag strokes
   hidden from it), exports the job, runs the real generator process
   (`python -m backend run JOB`) and imports the result (Sequencer strip + camera background).
4. Where the generator had no PyAV (PNG frames only), encodes them with Blender's own FFmpeg
   (`animate_anything.encode_video`) and imports the MP4 instead.
5. Saves demo.blend (paths relative, so the folder can move) and writes video.mp4, flow.mp4 and
   contact_sheet.png next to it. The folder is printed at the end (default ./output/demo).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXT_ID = "animate_anything"
REPO = "aa_demo"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "output" / "demo"), help="output folder")
    parser.add_argument("--frames", type=int, default=49, help="frames of the video (default 49)")
    parser.add_argument("--width", type=int, default=480, help="video width, a multiple of 8")
    parser.add_argument("--height", type=int, default=320, help="video height, a multiple of 8")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples of the reference render")
    args = parser.parse_args(argv)
    out = Path(args.output).resolve()
    t0 = time.perf_counter()
    # Blender's user folder (preferences, the wheels it syncs when an extension is enabled) is
    # shared with any Blender of the same version on this machine: give the demo its own.
    user_dir = Path(tempfile.mkdtemp(prefix="aa_demo_user_"))
    os.environ["BLENDER_USER_RESOURCES"] = str(user_dir)
    # The contact sheet is made from out/frames, which the generator writes beside video.mp4 only
    # when asked (backend/outputs.py).
    os.environ.setdefault("ANIMATE_ANYTHING_PNG", "1")

    import bpy

    print(f"demo: Blender {bpy.app.version_string}, output {out}")
    if out.exists():
        shutil.rmtree(out / "jobs", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    repo_dir = Path(tempfile.mkdtemp(prefix="aa_demo_repo_"))
    try:
        enable_extension(bpy, repo_dir)
        scene = build_scene(bpy, args)
        settings = scene.animate_anything
        settings.output_dir = str(out / "jobs")
        print(f"demo: scene built in {time.perf_counter() - t0:.1f} s; generating (preview mode)")

        t1 = time.perf_counter()
        result = bpy.ops.animate_anything.generate()
        run = extension_module("operators.adapter.runs").run_for(scene)  # the run state, in memory
        if result != {"FINISHED"}:
            print(f"demo: Generate ended with {result}: {run and run.full_message()}", file=sys.stderr)
            return 1
        job = Path(run.job_dir)
        print(f"demo: {run.full_message()}")
        print(f"demo: generate took {time.perf_counter() - t1:.1f} s (render, export, generator, import)")
        if not (job / "out" / "video.mp4").exists():  # a generator without PyAV wrote PNG frames
            print("demo: encoding the frames to MP4 with Blender's FFmpeg (animate_anything.encode_video)")
            bpy.ops.animate_anything.encode_video(directory=str(job))

        files = collect_outputs(job, out)
        look_through_camera(bpy)
        blend = out / "demo.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        bpy.ops.file.make_paths_relative()
        bpy.ops.wm.save_mainfile()
        blend.with_suffix(".blend1").unlink(missing_ok=True)  # the backup of the first save
        files.insert(0, blend)
    finally:
        disable_extension(bpy)
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.rmtree(user_dir, ignore_errors=True)
    print(f"demo: done in {time.perf_counter() - t0:.1f} s. Files in {out}:")
    for path in files:
        print(f"  {path}")
    print(f"Open {out / 'demo.blend'} in Blender 4.5+ to see the strip and the camera background.")
    return 0


# ----------------------------------------------------------------------------- the extension
def enable_extension(bpy, repo_dir: Path):
    """Load this repository the way Blender loads a user extension."""
    import addon_utils

    os.symlink(ROOT, repo_dir / EXT_ID, target_is_directory=True)
    repos = bpy.context.preferences.extensions.repos
    if repos.get(REPO) is None:
        repos.new(name=REPO, module=REPO, custom_directory=str(repo_dir), source="USER")
    mod = addon_utils.enable(f"bl_ext.{REPO}.{EXT_ID}", default_set=True, handle_error=_raise)
    if mod is None:
        raise RuntimeError("the Animate Anything extension did not load")
    return mod


def disable_extension(bpy):
    import addon_utils

    addon_utils.disable(f"bl_ext.{REPO}.{EXT_ID}", default_set=True)
    repos = bpy.context.preferences.extensions.repos
    if repos.get(REPO) is not None:
        repos.remove(repos[REPO])


def _raise(exc):
    raise exc


def _compat():
    """The loaded extension's operators/adapter/compat.py: the one place that knows Blender-version
    differences."""
    return extension_module("operators.adapter.compat")


def extension_module(name: str):
    """A module of the loaded extension, e.g. "operators.adapter.runs"."""
    return importlib.import_module(f"bl_ext.{REPO}.{EXT_ID}.{name}")


# ----------------------------------------------------------------------------- the scene
def build_scene(bpy, args):
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    scene = bpy.context.scene
    scene.name = "Animate Anything demo"
    scene.frame_start, scene.frame_end = 1, args.frames
    scene.render.fps = 24
    scene.render.resolution_x, scene.render.resolution_y = args.width, args.height
    scene.render.resolution_percentage = 100
    scene.render.engine = "CYCLES"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = False
    scene.cycles.device = "CPU"
    scene.view_settings.view_transform = "Standard"

    world = bpy.data.worlds.new("Sky")
    scene.world = world
    _sky(world)

    floor = _mesh_object(bpy, scene, "Floor", "plane", size=30.0)
    checker = ("ShaderNodeTexChecker", 12.0, (0.8, 0.75, 0.6, 1), (0.15, 0.2, 0.3, 1))
    floor.data.materials.append(_pattern_material(bpy, "Checker", *checker))
    cube = _mesh_object(bpy, scene, "Cube", "cube", size=1.6, location=(-1.8, 0.6, 0.8))
    cube.rotation_euler.z = math.radians(25)
    brick = ("ShaderNodeTexBrick", 4.0, (0.6, 0.15, 0.08, 1), (0.45, 0.1, 0.05, 1))
    cube.data.materials.append(_pattern_material(bpy, "Brick", *brick))
    sphere = _mesh_object(bpy, scene, "Sphere", "sphere", size=1.0, location=(0.9, -0.2, 1.0))
    sphere.data.materials.append(_marble_material(bpy))
    cone = _mesh_object(bpy, scene, "Cone", "cone", size=1.0, location=(2.6, 2.2, 1.0))
    cone.data.materials.append(_generated_texture_material(bpy))

    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)

    cam = _keyed_camera(bpy, scene, args.frames)
    scene.camera = cam
    gp = _drag_strokes(bpy, scene, cam, sphere, radius=1.0)

    settings = scene.animate_anything
    settings.mode = "preview"
    settings.reference_source = "RENDER"
    settings.use_scene_range = True
    settings.num_frames = args.frames
    settings.width, settings.height = args.width, args.height
    settings.fps = 8.0
    settings.drag_source = "GREASE_PENCIL"
    settings.drag_object = gp
    settings.import_strip = settings.import_background = True
    settings.import_plane = False
    return scene


def _mesh_object(bpy, scene, name, kind, size, location=(0.0, 0.0, 0.0)):
    import bmesh

    bm = bmesh.new()
    if kind == "plane":
        bmesh.ops.create_grid(bm, x_segments=1, y_segments=1, size=size / 2)
    elif kind == "cube":
        bmesh.ops.create_cube(bm, size=size)
    elif kind == "sphere":
        bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=size)
    else:
        bmesh.ops.create_cone(bm, cap_ends=True, segments=32, radius1=size, radius2=0.0, depth=2 * size)
    for face in bm.faces:
        face.smooth = kind in ("sphere", "cone")
    mesh = bpy.data.meshes.new(name)
    bm.to_mesh(mesh)
    bm.free()
    # Box-projected UVs so image textures have coordinates on every primitive.
    uv = mesh.uv_layers.new(name="UVMap")
    for loop in mesh.loops:
        co = mesh.vertices[loop.vertex_index].co
        uv.data[loop.index].uv = ((co.x + co.z) / (2 * size) + 0.5, (co.y + co.z) / (2 * size) + 0.5)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    scene.collection.objects.link(obj)
    return obj


def _material(bpy, name):
    mat = bpy.data.materials.new(name)
    nt = _compat().node_tree(mat)
    bsdf = next(n for n in nt.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    return mat, nt, bsdf


def _pattern_material(bpy, name, node_type, scale, color1, color2):
    """A two-colour procedural texture (checker, brick: `node_type`) as the base colour."""
    mat, nt, bsdf = _material(bpy, name)
    tex = nt.nodes.new(node_type)
    tex.inputs["Scale"].default_value = scale
    tex.inputs["Color1"].default_value = color1
    tex.inputs["Color2"].default_value = color2
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _marble_material(bpy):
    mat, nt, bsdf = _material(bpy, "Marble")
    wave = nt.nodes.new("ShaderNodeTexWave")
    wave.inputs["Scale"].default_value = 3.0
    wave.inputs["Distortion"].default_value = 8.0
    ramp = nt.nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.05, 0.3, 0.6, 1)
    ramp.color_ramp.elements[1].color = (0.9, 0.9, 0.95, 1)
    nt.links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
    nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _generated_texture_material(bpy):
    """An image texture made in code (stripes and rings), packed into the .blend."""
    import numpy as np

    n = 128
    y, x = np.mgrid[0:n, 0:n] / n
    r = np.hypot(x - 0.5, y - 0.5)
    rgba = np.ones((n, n, 4), np.float32)
    rgba[..., 0] = 0.5 + 0.5 * np.sin(r * 40)
    rgba[..., 1] = 0.5 + 0.5 * np.sin(x * 25)
    rgba[..., 2] = 0.2
    image = bpy.data.images.new("Rings", n, n)
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    mat, nt, bsdf = _material(bpy, "Rings")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    nt.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _sky(world):
    bg = next(n for n in _compat().node_tree(world).nodes if n.bl_idname == "ShaderNodeBackground")
    bg.inputs["Color"].default_value = (0.45, 0.6, 0.85, 1)
    bg.inputs["Strength"].default_value = 0.8


def _keyed_camera(bpy, scene, frames):
    """Dolly in and orbit a little to the left over the frame range (two keys)."""
    from mathutils import Vector

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.data.lens = 30.0
    scene.collection.objects.link(cam)
    target = Vector((0.3, 0.5, 0.9))
    for frame, pos in ((1, (1.5, -9.0, 3.0)), (frames, (-1.0, -6.5, 2.4))):
        cam.location = pos
        cam.rotation_euler = (target - Vector(pos)).to_track_quat("-Z", "Y").to_euler()
        cam.keyframe_insert("location", frame=frame)
        cam.keyframe_insert("rotation_euler", frame=frame)
    scene.frame_set(1)
    return cam


def _drag_strokes(bpy, scene, cam, target, radius, lift=(0.9, 0.8)):
    """Grease-pencil (v3) strokes on frame 1 that move `target` (a sphere of `radius`): a closed
    outline around it (a region: everything inside moves with the drag) and one open stroke from
    its centre up and to the right (the drag). Drawn in the plane facing the first frame's camera.
    The strokes are instructions, not content: the object is left visible, as an artist leaves it,
    and the extension hides it from the reference render by itself (reference.drag_objects)."""
    import numpy as np

    scene.frame_set(scene.frame_start)
    centre = np.array(target.location, np.float64)
    view = centre - np.array(cam.matrix_world.translation)
    view /= np.linalg.norm(view)
    right = np.cross(view, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, view)
    angle = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)[:, None]
    outline = centre + 1.1 * radius * (np.cos(angle) * right + np.sin(angle) * up)
    t = np.linspace(0.0, 1.0, 16)[:, None]
    drag = centre + t * (lift[0] * right + lift[1] * up) + 0.1 * np.sin(t * math.pi) * right

    gpd = _compat().grease_pencil_data().new("Drags")
    mat = bpy.data.materials.new("Drag stroke")
    bpy.data.materials.create_gpencil_data(mat)
    gpd.materials.append(mat)
    obj = bpy.data.objects.new("Drags", gpd)
    scene.collection.objects.link(obj)
    drawing = gpd.layers.new("Drags").frames.new(scene.frame_start).drawing
    drawing.add_strokes([len(outline), len(drag)])
    points = np.concatenate([outline, drag]).astype(np.float32)
    drawing.attributes["position"].data.foreach_set("vector", points.ravel())
    radii = drawing.attributes.get("radius") or drawing.attributes.new("radius", "FLOAT", "POINT")
    radii.data.foreach_set("value", np.full(len(points), 0.05, np.float32))
    cyclic = drawing.attributes.get("cyclic") or drawing.attributes.new("cyclic", "BOOLEAN", "CURVE")
    cyclic.data.foreach_set("value", [True, False])
    return obj


def look_through_camera(bpy) -> None:
    """The saved file opens in camera view (where the camera background shows), sidebar open."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                space = area.spaces.active
                space.region_3d.view_perspective = "CAMERA"
                space.show_region_ui = True


# ----------------------------------------------------------------------------- outputs
def collect_outputs(job: Path, out: Path) -> list[Path]:
    """Copy the videos next to the .blend and make the contact sheet."""
    files = []
    for name in ("video.mp4", "flow.mp4"):
        src = job / "out" / name
        if src.is_file():
            shutil.copyfile(src, out / name)
            files.append(out / name)
    sheet = out / "contact_sheet.png"
    contact_sheet(sorted((job / "out" / "frames").glob("*.png")), sheet)
    files.append(sheet)
    return files


def contact_sheet(frames: list[Path], path: Path, columns: int = 4, rows: int = 3) -> None:
    """columns x rows frames picked evenly (first and last included), labelled, as one PNG."""
    from PIL import Image, ImageDraw

    count = min(len(frames), columns * rows)
    picks = [round(i * (len(frames) - 1) / max(1, count - 1)) for i in range(count)]
    first = Image.open(frames[0])
    w, h = first.size
    pad = 4
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for k, index in enumerate(picks):
        x = pad + (k % columns) * (w + pad)
        y = pad + (k // columns) * (h + pad)
        with Image.open(frames[index]) as im:
            sheet.paste(im.convert("RGB"), (x, y))
        draw.rectangle((x, y, x + 46, y + 14), fill=(0, 0, 0))
        draw.text((x + 3, y + 2), f"f {index:02d}", fill=(255, 255, 255))
    tmp = path.with_name(path.name + ".part")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, path)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # bpy 4.5 can hang at interpreter exit (reference/blender-api-notes.md)
