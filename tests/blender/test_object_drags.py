"""Issue 12 in real Blender, end to end: an open grease-pencil stroke drawn on an object (default
point radius, no outline) moves the whole object in the generated video; two strokes rotate it; a
stroke on the ground moves a disc of the panel's drag radius. Measured on the output frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.blender import scene_kit as kit
from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender

W, H = 160, 120
DEPTH = 3.0  # the strokes lie in the plane z = -DEPTH in front of the camera


def build_studio(bpy, scene, compat, output_dir):
    """A static camera at the origin looking down -Z at a red cube (left), a blue cube (right) and
    a grey ground behind them, rendered flat with Workbench; a grease pencil object for drags.
    Returns its grease pencil data. (scripts/measure_object_drag.py builds the same scene.)"""
    kit.add_camera(bpy, scene)
    kit.add_box(bpy, scene, "Ground", (0, 0, -9), (40, 40, 0.2), (0.5, 0.5, 0.5))
    kit.add_box(bpy, scene, "Red", (-1.0, 0.0, -5.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0))
    kit.add_box(bpy, scene, "Blue", (1.3, 0.0, -5.0), (0.8, 0.8, 0.8), (0.0, 0.0, 1.0))
    gp, gpd = kit.add_drag_object(bpy, scene, compat)
    kit.flat_workbench(scene, W, H)
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = 1, 9
    s = scene.animate_anything
    s.width, s.height, s.num_frames = W, H, 9
    s.reference_source = "RENDER"
    s.drag_source = "GREASE_PENCIL"
    s.drag_object = gp
    s.mode = "preview"
    s.output_dir = str(output_dir)
    scene.frame_set(1)
    return gpd


@pytest.fixture
def studio(ext, bpy_module, tmp_path):
    _, scene = ext
    gpd = build_studio(bpy_module, scene, submodule("operators.adapter.compat"), tmp_path / "jobs")
    yield scene, gpd
    submodule("operators.adapter.runs").stop_active_run()


def _fx(scene) -> float:
    cam = scene.camera.data
    return cam.lens / cam.sensor_width * W


def _to_world(scene, uv):
    """Job pixel (u, v) -> the point in the stroke plane z = -DEPTH on its ray (camera at the origin)."""
    fx = _fx(scene)
    u, v = uv
    return ((u - W / 2) * DEPTH / fx, -(v - H / 2) * DEPTH / fx, -DEPTH)


def _draw(gpd, strokes):
    """Open strokes (lists of world points), default point radius."""
    drawing = gpd.layers.new("L").frames.new(1).drawing
    drawing.add_strokes([len(s) for s in strokes])
    points = np.concatenate([np.asarray(s, np.float32) for s in strokes])
    drawing.attributes["position"].data.foreach_set("vector", points.ravel())


def _line(scene, start, end, n=6):
    return [_to_world(scene, np.asarray(start) + t * (np.asarray(end) - start)) for t in np.linspace(0, 1, n)]


def _generate(bpy, scene) -> Path:
    assert bpy.ops.animate_anything.generate() == {"FINISHED"}
    job = Path(submodule("operators.adapter.runs").last_job_dir(scene))
    assert (job / "out" / "result.json").is_file()
    return job


def _frames(job: Path) -> np.ndarray:
    """The output video's frames (F, H, W, 3) uint8: out/frames (a generator without PyAV) or the mp4."""
    from PIL import Image

    pngs = sorted((job / "out" / "frames").glob("*.png"))
    if pngs:
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs])
    import av

    with av.open(str(job / "out" / "video.mp4")) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _mask(frame, colour):
    f = frame.astype(int)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    if colour == "red":
        return (r > 150) & (g < 80) & (b < 80)
    return (b > 150) & (r < 80) & (g < 80)


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _angle(mask):
    """Orientation in degrees of a mask's principal axis (image x right, y down)."""
    ys, xs = np.nonzero(mask)
    c = np.cov(np.stack([xs - xs.mean(), ys - ys.mean()]))
    w, v = np.linalg.eigh(c)
    ax = v[:, np.argmax(w)]
    return math.degrees(math.atan2(ax[1], ax[0])) % 180.0


def _reference_masks(job: Path):
    from PIL import Image

    ref = np.asarray(Image.open(job / "reference.png").convert("RGB"))
    return _mask(ref, "red"), _mask(ref, "blue")


REQUEST = np.array([24.0, -10.0])  # the drag on the red cube, pixels


def drag_red_cube(bpy, scene, gpd) -> dict:
    """Draw one open stroke (default point radius) from the red cube's centre by REQUEST, generate,
    and measure on the output frames: the red cube's motion, its object error (distance to the
    request), the blue cube's motion and the red area's ratio (1 = moved, not stretched)."""
    red_uv = np.array([W / 2 + _fx(scene) * (-1.0) / 5.0, H / 2])  # the red cube's centre, projected
    _draw(gpd, [_line(scene, red_uv, red_uv + REQUEST)])
    job = _generate(bpy, scene)
    red0, blue0 = _reference_masks(job)
    last = _frames(job)[-1]
    red1, blue1 = _mask(last, "red"), _mask(last, "blue")
    moved = _centroid(red1) - _centroid(red0)
    return {
        "job": str(job),
        "requested_px": REQUEST.tolist(),
        "red_moved_px": moved.round(2).tolist(),
        "object_error_px": round(float(np.linalg.norm(moved - REQUEST)), 2),
        "blue_moved_px": round(float(np.linalg.norm(_centroid(blue1) - _centroid(blue0))), 2),
        "red_area_ratio": round(float(red1.sum() / red0.sum()), 3),
    }


def test_an_open_stroke_on_an_object_moves_the_whole_object(studio, bpy_module):
    scene, gpd = studio
    m = drag_red_cube(bpy_module, scene, gpd)
    assert m["object_error_px"] < 2.0, m  # the whole cube, by the drag
    assert abs(m["red_area_ratio"] - 1.0) < 0.1, m  # moved, not stretched
    assert m["blue_moved_px"] < 0.5, m  # the other cube stays


def test_two_strokes_rotate_an_object(studio, bpy_module):
    scene, gpd = studio
    bpy = bpy_module
    red = scene.objects["Red"]
    red.scale, red.location.x = (1.6, 0.5, 1.0), -0.2  # a bar, so that its orientation can be measured
    scene.objects["Blue"].hide_render = True  # out of the bar's way
    centre = np.array([W / 2 + _fx(scene) * -0.2 / 4.5, H / 2])  # the bar's front face, projected
    half = 0.5 * _fx(scene) / 4.5  # inside the front face (half-width 0.8)
    turn = math.radians(25.0)
    ends = []
    for sign in (-1, 1):
        start = centre + [sign * half, 0.0]
        end = centre + sign * half * np.array([math.cos(turn), math.sin(turn)])
        ends.append(_line(scene, start, end))
    _draw(gpd, ends)
    job = _generate(bpy, scene)
    red0, _ = _reference_masks(job)
    red1 = _mask(_frames(job)[-1], "red")
    turned = (_angle(red1) - _angle(red0) + 90.0) % 180.0 - 90.0
    assert abs(turned - 25.0) < 3.0, turned
    assert np.linalg.norm(_centroid(red1) - _centroid(red0)) < 2.0


def test_a_stroke_on_the_ground_moves_a_disc_of_the_drag_radius(studio, bpy_module):
    scene, gpd = studio
    bpy = bpy_module
    start = np.array([W * 0.5, H * 0.85])  # the ground, below the cubes
    _draw(gpd, [_line(scene, start, start + [12.0, 0.0])])
    job = _generate(bpy, scene)
    from blender_animate.flowviz import load_flow
    from blender_animate.job import Conditions

    cond = Conditions.load(job / "conditions.npz")
    radius = float(cond.track_radius[0])
    share = scene.animate_anything.drag_radius / 100.0
    assert radius == pytest.approx(share * math.hypot(W, H), rel=1e-3)  # the panel's size, not the stroke's
    flow = load_flow(job / "out" / "flow.npz")[-1]
    ys, xs = np.mgrid[0:H, 0:W]
    r = np.hypot(xs + 0.5 - start[0], ys + 0.5 - start[1])
    assert np.allclose(flow[r < 0.45 * radius], [12.0, 0.0], atol=0.3)  # the disc's core follows
    assert np.abs(flow[r > 1.05 * radius]).max() < 1e-3  # nothing beyond its radius
