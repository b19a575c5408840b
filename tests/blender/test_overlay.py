"""The drag overlay (issue 12, item 5) in real Blender, background mode: the geometry it computes
for a scene built here (a drag on a cube moves the cube's silhouette, one on the ground a disc of
the set radius, one inside a closed outline the outline), what the draw callback would draw, its
registration, and the panel's drag list."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tests.blender import scene_kit as kit
from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender

W, H = 160, 120
DEPTH = 3.0  # the strokes lie in the plane z = -DEPTH in front of the camera (at the origin)


def _to_world(scene, uv):
    fx = scene.camera.data.lens / scene.camera.data.sensor_width * W
    u, v = uv
    return ((u - W / 2) * DEPTH / fx, -(v - H / 2) * DEPTH / fx, -DEPTH)


def _line(start, end, n=5):
    return [np.asarray(start) + t * (np.asarray(end, float) - start) for t in np.linspace(0, 1, n)]


CUBE_DRAG = _line((80.0, 60.0), (110.0, 66.0))
GROUND_DRAG = _line((20.0, 20.0), (40.0, 30.0))
OUTLINE = [(118.0, 84.0), (152.0, 84.0), (152.0, 112.0), (118.0, 112.0)]
OUTLINE_DRAG = _line((135.0, 97.0), (145.0, 100.0))
CUBE_DRAG_2 = _line((74.0, 55.0), (104.0, 61.0))


@pytest.fixture
def drag_scene(ext, bpy_module):
    bpy = bpy_module
    _, scene = ext
    compat = submodule("operators.adapter.compat")
    kit.add_camera(bpy, scene)
    cube = kit.add_box(bpy, scene, "Cube", (0.0, 0.0, -5.0), (1.0, 1.0, 1.0))
    cube.rotation_euler = (0.4, 0.6, 0.0)  # three faces visible: a hexagonal silhouette
    kit.add_box(bpy, scene, "Ground", (0.0, 0.0, -9.0), (40.0, 40.0, 0.2))
    gp, gpd = kit.add_drag_object(bpy, scene, compat)
    strokes = [CUBE_DRAG, GROUND_DRAG, OUTLINE, OUTLINE_DRAG, CUBE_DRAG_2]
    drawing = gpd.layers.new("L").frames.new(1).drawing
    drawing.add_strokes([len(s) for s in strokes])
    kit.set_stroke_points(drawing, [_to_world(scene, uv) for s in strokes for uv in s])
    attr = drawing.attributes.get("cyclic") or drawing.attributes.new("cyclic", "BOOLEAN", "CURVE")
    attr.data.foreach_set("value", np.array([False, False, True, False, False]))
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = W, H, 100
    scene.frame_start, scene.frame_end = 1, 9
    s = scene.animate_anything
    s.width, s.height, s.num_frames = W, H, 9
    s.drag_source, s.drag_object = "GREASE_PENCIL", gp
    s.drag_radius = 10.0  # percent of the diagonal: 20 px
    scene.frame_set(5)  # not the first frame: the overlay shows the first frame's positions
    return scene, cube


def _area(tris):
    t = np.asarray(tris, np.float64)
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    return float(np.abs(_cross(b - a, c - a)).sum() / 2)


def _cross(u, v):
    """The z of the 2D cross product, row-wise (numpy 2 refuses 2-vectors in np.cross)."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def test_each_drag_shows_what_it_moves(drag_scene, bpy_module):
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import geometry

    bpy = bpy_module
    scene, cube = drag_scene
    overlay = submodule("operators.adapter.overlay")
    ov = overlay.drag_overlay(bpy.context)
    assert scene.frame_current == 5  # the frame is put back
    assert (ov.width, ov.height, ov.render_wh) == (W, H, (W, H))
    kinds = [ov.regions[d.region].kind for d in ov.drags]
    assert kinds == ["object", "disc", "outline", "object"], ov.rows()
    assert ov.rows()[0][1] == "Cube" and ov.rows()[2][1] == "outline 0"
    # Two drags on the cube: one region, moved together.
    assert ov.drags[0].region == ov.drags[3].region and ov.regions[ov.drags[0].region].drags == [0, 3]

    # The cube's silhouette against Blender's own projection of its vertices.
    verts = [cube.matrix_world @ v.co for v in cube.data.vertices]
    ndc = np.array([tuple(world_to_camera_view(scene, scene.camera, v)) for v in verts])
    px = np.stack([ndc[:, 0] * W, (1.0 - ndc[:, 1]) * H], axis=1)
    hull = px[geometry.convex_hull_2d([tuple(p) for p in px])]
    hull_area = _area(overlay.fan(hull))
    region = ov.regions[ov.drags[0].region]
    assert region.triangles.shape[1:] == (3, 2) and len(region.triangles) == 6  # three faces
    assert abs(_area(region.triangles) - hull_area) < 1e-3 * hull_area  # facing faces tile it
    pts = region.triangles.reshape(-1, 2)
    assert np.allclose(pts.min(0), px.min(0), atol=1e-3) and np.allclose(pts.max(0), px.max(0), atol=1e-3)
    assert len(region.contour) == 6  # the hexagon's edges, none inside
    assert abs(region.share - hull_area / (W * H)) < 0.01

    # The ground covers the frame (more than Object Size): a disc of Drag Radius at the start.
    disc = ov.regions[ov.drags[1].region]
    assert disc.name == "disc of 20 px" and disc.radius_px == pytest.approx(20.0)
    ends = disc.contour.reshape(-1, 2)
    assert np.allclose(np.linalg.norm(ends - GROUND_DRAG[0], axis=1), 20.0, atol=1e-6)
    # The outline is the closed stroke's polygon (it wins over the ground).
    outline = ov.regions[ov.drags[2].region]
    assert np.allclose(outline.contour[:, 0], OUTLINE, atol=1e-3)
    assert _area(outline.triangles) == pytest.approx(34 * 28, rel=1e-4)

    # Paths start at the drag's start pixel; the arrowhead points along the last segment.
    for drag, drawn in zip(ov.drags, (CUBE_DRAG, GROUND_DRAG, OUTLINE_DRAG, CUBE_DRAG_2)):
        assert np.allclose(drag.path[0], drawn[0], atol=1e-3)
        assert np.allclose(drag.arrow[0], drawn[-1], atol=1e-3)
        axis = drag.arrow[0] - drag.arrow[1:].mean(axis=0)
        last = np.asarray(drawn[-1]) - drawn[-2]
        axis, last = axis / np.linalg.norm(axis), last / np.linalg.norm(last)
        assert _cross(axis, last) == pytest.approx(0.0, abs=1e-5) and axis @ last > 0.999

    # Moves = Discs: the cube drags move discs too; outlines still win.
    scene.animate_anything.drag_regions = "DISCS"
    kinds = [r.kind for r in overlay.drag_overlay(bpy.context).regions]
    assert kinds == ["disc", "disc", "outline", "disc"]


def test_object_over_the_share_moves_a_disc(drag_scene, bpy_module):
    scene, _ = drag_scene
    overlay = submodule("operators.adapter.overlay")
    scene.animate_anything.object_max_share = 1.0  # percent: the cube covers more
    ov = overlay.drag_overlay(bpy_module.context)
    assert [ov.regions[d.region].kind for d in ov.drags] == ["disc", "disc", "outline", "disc"]


def test_region_mapping_follows_the_crop(ext):
    """job px -> region px through the camera frame, with the job's centre crop of the render."""
    overlay = submodule("operators.adapter.overlay")
    frame = np.array([(10.0, 110.0), (210.0, 110.0), (210.0, 10.0), (10.0, 10.0)])  # 200 x 100
    # Render 200 x 100, job 100 x 100: the sides are cropped, the job is the middle half.
    pts = overlay.job_to_region(
        np.array([(0.0, 0.0), (100.0, 100.0), (50.0, 50.0)]), frame, (200, 100), (100, 100)
    )
    assert np.allclose(pts, [(60.0, 110.0), (160.0, 10.0), (110.0, 60.0)])


def test_draw_callback_and_what_it_draws(drag_scene, bpy_module):
    bpy = bpy_module
    overlay = submodule("operators.adapter.overlay")
    draw = submodule("operators.adapter.overlay_draw")
    assert bpy.app.background
    assert draw.draw_callback() == 0  # no 3D view in background mode: nothing, no error
    ov = overlay.drag_overlay(bpy.context)
    assert overlay.cached(bpy.context) is ov
    frame = np.array([(0.0, H), (W, H), (W, 0.0), (0.0, 0.0)])  # the camera frame fills the region
    prims = draw.primitives(ov, frame)
    fills = [p for p in prims if p.kind == "TRIS" and p.colour[3] < 1]
    assert len(fills) == len(ov.regions) == 3
    arrows = [p for p in prims if p.kind == "TRIS" and p.colour[3] == 1]
    assert len(arrows) == 4
    tip = arrows[0].coords[0]
    assert np.allclose(tip, (CUBE_DRAG[-1][0], H - CUBE_DRAG[-1][1]), atol=1e-3)  # region y is up
    lines = [p for p in prims if p.kind == "LINES"]
    assert all(len(p.coords) % 2 == 0 for p in lines)
    halos = [p for p in lines if p.colour == draw.HALO]
    assert len(halos) == len(lines) // 2  # every line over a dark halo
    assert draw.issue(prims) == 0  # gpu cannot draw in background mode: skipped, no error
    scene = bpy.context.scene
    scene.animate_anything.show_drag_overlay = False
    assert draw.draw_callback() == 0


def test_handlers_follow_registration(ext, bpy_module):
    bpy = bpy_module
    draw = submodule("operators.adapter.overlay_draw")
    overlay = submodule("operators.adapter.overlay")
    assert len(draw._handle) == 1
    fns = [fn for _, fn in overlay._HANDLERS]
    assert fns and all(
        fn in bpy.app.handlers.depsgraph_update_post + bpy.app.handlers.load_post for fn in fns
    )
    draw.unregister()
    try:
        assert draw._handle == [] and overlay._HANDLERS == []
        assert not any(fn in bpy.app.handlers.depsgraph_update_post for fn in fns)
    finally:
        draw.register()
    assert len(draw._handle) == 1


def test_cache_forgets_on_scene_changes(drag_scene, bpy_module):
    bpy = bpy_module
    scene, cube = drag_scene
    overlay = submodule("operators.adapter.overlay")
    ov = overlay.drag_overlay(bpy.context)
    assert overlay.cached(bpy.context) is ov
    scene.animate_anything.drag_radius = 5.0  # a setting: another key
    assert overlay._settings_key(bpy.context) not in overlay._cache
    ov = overlay.drag_overlay(bpy.context)
    cube.location.x += 0.1
    bpy.context.view_layer.update()  # a depsgraph update of an object
    assert overlay._cache == {} and overlay.cached(bpy.context) is ov  # stale, until recomputed


class _Layout:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: self
        return lambda *a, **k: self.calls.append((name, a[0] if a else None, k.get("text")))

    def __setattr__(self, name, value):
        if name == "calls":
            object.__setattr__(self, name, value)


def test_panel_lists_the_drags(drag_scene, bpy_module):
    bpy = bpy_module
    overlay = submodule("operators.adapter.overlay")
    layout = _Layout()
    panel = bpy.types.ANIMATE_ANYTHING_PT_drags_view3d
    overlay.invalidate()
    panel.draw(types.SimpleNamespace(layout=layout), bpy.context)  # nothing computed yet: no list
    assert not any(text == "Cube" for _, _, text in layout.calls)
    overlay.drag_overlay(bpy.context)
    layout = _Layout()
    panel.draw(types.SimpleNamespace(layout=layout), bpy.context)
    texts = [text for kind, _, text in layout.calls if kind == "label"]
    assert texts.count("Cube") == 2 and "disc of 20 px" in texts and "outline 0" in texts
    assert any("stroke 1" in t for t in texts if t)


GPU_SCRIPT = r"""
import json, os, sys, tempfile
sys.path.insert(0, sys.argv[1])
import bpy, gpu, mathutils, numpy as np
if not hasattr(gpu, "init"):
    print("RESULT " + json.dumps({"skip": "this Blender has no gpu.init() for background drawing"}))
    sys.exit(0)
from tests.blender import conftest
folder = tempfile.mkdtemp()
os.symlink(conftest.ROOT, os.path.join(folder, conftest.EXT_ID), target_is_directory=True)
conftest._enable(bpy, folder)
ov_mod = conftest.submodule("operators.adapter.overlay")
draw = conftest.submodule("operators.adapter.overlay_draw")
try:
    gpu.init()
except SystemError as exc:
    print("RESULT " + json.dumps({"skip": f"gpu.init() failed: {exc}"}))
    sys.exit(0)
W, H = 64, 48
ring = ov_mod.circle(32.0, 24.0, 10.0)
region = ov_mod.Region("disc", "disc of 10 px", ov_mod.fan(ring), ov_mod.closed_segments(ring), drags=[0])
path = np.array([(32.0, 24.0), (52.0, 24.0)])
drag = ov_mod.DragShape("d", path, ov_mod.arrowhead(path, 6.0), 0, (1.0, 0.55, 0.0))
ov = ov_mod.Overlay(W, H, (W, H), [drag], [region])
prims = draw.primitives(ov, np.array([(0.0, H), (W, H), (W, 0.0), (0.0, 0.0)]))
off = gpu.types.GPUOffScreen(W, H)
with off.bind():
    fb = gpu.state.active_framebuffer_get()
    fb.clear(color=(0.0, 0.0, 0.0, 1.0))
    with gpu.matrix.push_pop(), gpu.matrix.push_pop_projection():
        gpu.matrix.load_identity()
        ortho = mathutils.Matrix(((2 / W, 0, 0, -1), (0, 2 / H, 0, -1), (0, 0, 1, 0), (0, 0, 0, 1)))
        gpu.matrix.load_projection_matrix(ortho)  # region pixels, as in a POST_PIXEL handler
        drawn = draw.draw_primitives(prims)
    rgba = np.array(fb.read_color(0, 0, W, H, 4, 0, "FLOAT").to_list(), np.float64)
off.free()
conftest.disable_extension(bpy)
def at(x, y):  # job pixel (x, y) -> the read-back row of region y = H - y
    return [round(float(c), 3) for c in rgba[H - 1 - int(y), int(x), :3]]
print("RESULT " + json.dumps({"drawn": drawn, "count": len(prims), "fill": at(26, 20),
      "outside": at(3, 3), "path": at(42, 24), "contour": at(32, 14), "arrow": at(49, 24)}))
"""


def test_the_gpu_calls_draw_the_shapes(ext):
    """Where this Blender can draw in background mode (gpu.init(), 5.2+), the gpu half really draws
    the shapes into an offscreen buffer (a fresh process: gpu.init stays out of this one)."""
    import json
    import subprocess
    import sys

    from tests.blender.conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", GPU_SCRIPT, str(ROOT)], capture_output=True, text=True, timeout=120
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    if "skip" in out:
        pytest.skip(out["skip"])
    assert out["drawn"] == out["count"] > 0
    assert out["outside"] == [0.0, 0.0, 0.0]
    assert 0.1 < out["fill"][0] < 0.4 and out["fill"][2] == 0.0  # translucent orange over black
    for name in ("path", "contour", "arrow"):
        r, g, b = out[name]
        assert r > 0.9 and 0.4 < g < 0.7 and b < 0.05, (name, out[name])
