"""The reference image: from files of several kinds, and rendered with its depth pass."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from tests.blender import scene_kit as kit

pytestmark = pytest.mark.blender


def _png16(path, rgb16):
    """Write (H, W, 3) uint16 as a 16-bit RGB PNG (Pillow cannot write 16-bit colour)."""
    H, W, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(H))

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)
    with open(path, "wb") as fh:
        fh.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )


def _render_settings(bpy, scene):
    """Everything render_reference may touch, as plain values."""
    r, ims = scene.render, scene.render.image_settings
    values = [r.filepath, r.use_file_extension, r.use_sequencer, r.use_compositing, r.use_single_layer]
    values += [r.use_border, r.use_multiview, r.resolution_percentage, ims.file_format, ims.color_mode]
    values += [ims.color_depth, ims.exr_codec, bpy.context.view_layer.use_pass_z, scene.cycles.samples]
    values.append(bpy.context.view_layer.use_grease_pencil)
    values += [scene.cycles.use_denoising, scene.cycles.use_adaptive_sampling, len(bpy.data.node_groups)]
    values.append(sorted(i.name for i in bpy.data.images if i.type != "RENDER_RESULT"))
    if hasattr(scene, "compositing_node_group"):  # 5.0 (Scene.use_nodes is deprecated there)
        values.append(scene.compositing_node_group)
    else:
        values.append(scene.use_nodes)
    return values


def _plane_scene(bpy, scene, engine, distance=5.0):
    """A camera at the origin looking down -Z at a 4x4 plane `distance` away, filling part of the view."""
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.lens = 50.0
    mesh = bpy.data.meshes.new("Plane")
    s = 1.0
    mesh.from_pydata(
        [(-s, -s, -distance), (s, -s, -distance), (s, s, -distance), (-s, s, -distance)], [], [(0, 1, 2, 3)]
    )
    plane = bpy.data.objects.new("Plane", mesh)
    scene.collection.objects.link(plane)
    r = scene.render
    r.engine = engine
    r.resolution_x, r.resolution_y, r.resolution_percentage = 96, 72, 100
    if engine == "CYCLES":
        scene.cycles.samples = 4
        scene.cycles.device = "CPU"
    return cam, plane


def test_reference_from_rgba_png_and_16_bit_png(ext, aa, bpy_module, tmp_path):
    from PIL import Image

    bpy = bpy_module
    reference = aa("operators.adapter.reference")
    camera = aa("blender_animate.camera")
    # An RGBA PNG 200x100 with a distinct quadrant pattern; the job is 64x48 (aspect 4:3).
    rgba = np.zeros((100, 200, 4), np.uint8)
    rgba[..., 3] = 128  # half transparent: alpha is dropped, colour kept
    rgba[:50, :100, 0] = 255
    rgba[50:, 100:, 2] = 255
    rgba[:, 95:105, 1] = 200  # a green stripe in the middle column
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    img = bpy.data.images.load(str(tmp_path / "rgba.png"))
    rgb, warnings = reference.reference_from_image(img, 64, 48, render_wh=(200, 100))
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert warnings == []
    # Centre crop to 4:3 keeps x in [33.3, 166.7) of the source; the stripe stays centred.
    assert rgb[10, 5, 0] > 240 and rgb[40, 60, 2] > 240 and rgb[24, 32, 1] > 150
    assert rgb[10, 5, 2] < 10 and rgb[40, 60, 0] < 10
    # The same crop as rescale_intrinsics: a source pixel centre lands where K says it does.
    x0, y0, x1, y1, s = reference.crop_box((200, 100), (64, 48))
    K = camera.rescale_intrinsics(np.diag([100.0, 100.0, 1.0]), (200, 100), (64, 48))
    assert s == pytest.approx(K[0, 0] / 100.0) and -x0 * s == pytest.approx(K[0, 2])
    # A 16-bit PNG: Blender holds it as linear float; it comes back as the original 8-bit values.
    rgb16 = np.zeros((48, 64, 3), np.uint16)
    rgb16[..., 0] = np.linspace(0, 65535, 64, dtype=np.uint16)[None, :]
    rgb16[..., 1] = 32896  # 128.5/255
    _png16(tmp_path / "deep.png", rgb16)
    img16 = bpy.data.images.load(str(tmp_path / "deep.png"))
    assert img16.is_float
    out, _ = reference.reference_from_image(img16, 64, 48)
    expected = np.round(rgb16[..., 0] / 65535.0 * 255.0)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert np.abs(out[..., 1].astype(int) - 128).max() <= 1
    # A small image warns that it is upscaled; an aspect mismatch warns too.
    small = bpy.data.images.new("small", 16, 12)
    _, warnings = reference.reference_from_image(small, 64, 48, render_wh=(1920, 1080))
    assert any("upscaled" in w for w in warnings) and any("aspect" in w for w in warnings)
    with pytest.raises(reference.ReferenceImageError, match="pick an image"):
        reference.reference_from_image(None, 64, 48)
    missing = bpy.data.images.load(str(tmp_path / "rgba.png"))
    missing.filepath = str(tmp_path / "gone.png")
    missing.reload()
    with pytest.raises(reference.ReferenceImageError, match="no pixels"):
        reference.reference_from_image(missing, 64, 48)
    sequence = bpy.data.images.load(str(tmp_path / "rgba.png"), check_existing=False)
    sequence.source = "SEQUENCE"
    with pytest.raises(reference.ReferenceImageError, match="pick a still image"):
        reference.reference_from_image(sequence, 64, 48)


@pytest.mark.parametrize("engine", ["BLENDER_WORKBENCH", "CYCLES"])
def test_rendered_reference_and_depth(ext, aa, bpy_module, engine):
    bpy = bpy_module
    _, scene = ext
    reference = aa("operators.adapter.reference")
    _plane_scene(bpy, scene, engine, distance=5.0)
    scene.render.resolution_percentage = 50  # renders 48x36 -> upscaled to the job's 64x48
    scene.frame_current = 3
    before = _render_settings(bpy, scene)
    rgb, depth, render_wh, warnings = reference.render_reference(bpy.context, 1, 64, 48)
    assert rgb.shape == (48, 64, 3) and depth.shape == (48, 64) and depth.dtype == np.float32
    assert render_wh == (48, 36) and any("smaller than the video" in w for w in warnings)
    # The plane (2x2 at 5 units, 50 mm on a 36 mm sensor) covers the centre; the corners see nothing.
    np.testing.assert_allclose(depth[20:28, 28:36], 5.0, rtol=1e-4)
    assert np.isinf(depth[0, 0]) and np.isinf(depth[-1, -1])
    # The plane is 2 / 5 * 50 / 36 = 0.556 of the width across: count the finite depth columns.
    cols = np.isfinite(depth[24]).sum()
    assert cols == pytest.approx(0.556 * 64, abs=3)
    assert _render_settings(bpy, scene) == before and scene.frame_current == 3


def _strokes(bpy, compat, scene, distance):
    """A grease pencil object with a closed stroke across the view's centre, `distance` in front of
    the camera (at the origin, looking down -Z); its material draws strokes."""
    obj, gpd = kit.add_drag_object(bpy, scene, compat)
    drawing = gpd.layers.new("L").frames.new(1).drawing
    drawing.add_strokes([4])
    square = np.array([(-0.3, -0.3), (0.3, -0.3), (0.3, 0.3), (-0.3, 0.3)], np.float32)
    points = np.column_stack([square, np.full(4, -distance, np.float32)])
    kit.set_stroke_points(drawing, points, radius=0.1)
    return obj


@pytest.mark.parametrize("strokes", ["object_hidden", "collection_hidden", "visible"])
def test_depth_with_grease_pencil_strokes(ext, aa, bpy_module, strokes):
    """Regression: the drag strokes' object hidden from render (on the object or its collection)
    while scene.animate_anything.drag_object points at it gave a depth pass of small negative numbers
    (Blender's grease pencil pass converted the Z pass twice), and the generator saw only far pixels.
    The depth reads the plane's distance; strokes drawn in front of it stay out of the depth."""
    bpy = bpy_module
    _, scene = ext
    reference = aa("operators.adapter.reference")
    compat = aa("operators.adapter.compat")
    _plane_scene(bpy, scene, "CYCLES", distance=5.0)
    scene.cycles.samples = 1
    gp = _strokes(bpy, compat, scene, distance=3.0)
    if strokes == "object_hidden":
        gp.hide_render = True
    elif strokes == "collection_hidden":
        coll = bpy.data.collections.new("Strokes")
        scene.collection.children.link(coll)
        scene.collection.objects.unlink(gp)
        coll.objects.link(gp)
        coll.hide_render = True
    scene.animate_anything.drag_source = "GREASE_PENCIL"
    scene.animate_anything.drag_object = gp  # the pointer pulls the strokes into the render depsgraph
    before = _render_settings(bpy, scene)
    rgb, depth, _, _ = reference.render_reference(bpy.context, 1, 64, 48)
    np.testing.assert_allclose(depth[18:30, 26:38], 5.0, rtol=1e-4)
    assert np.isinf(depth[0, 0]) and np.isinf(depth[-1, -1])
    assert np.all(np.isinf(depth) | (depth > 4.9))
    assert _render_settings(bpy, scene) == before


def test_a_failed_render_restores_every_setting(ext, aa, bpy_module, monkeypatch):
    bpy = bpy_module
    _, scene = ext
    reference = aa("operators.adapter.reference")
    compat = aa("operators.adapter.compat")
    _plane_scene(bpy, scene, "CYCLES")
    scene.render.use_sequencer, scene.render.use_border = True, True
    scene.render.image_settings.file_format = "JPEG"
    scene.frame_current = 7
    before = _render_settings(bpy, scene)

    def broken_route(scene, view_layer):
        raise RuntimeError("compositor exploded")

    monkeypatch.setattr(compat, "depth_to_composite_output", broken_route)
    with pytest.raises(RuntimeError, match="compositor exploded"):
        reference.render_reference(bpy.context, 1, 64, 48)
    assert _render_settings(bpy, scene) == before and scene.frame_current == 7
    # An engine without a depth pass (a third-party engine) is refused before anything changes.
    engine = type(
        "AA_TEST_ENGINE", (bpy.types.RenderEngine,), {"bl_idname": "AA_TEST_ENGINE", "bl_label": "T"}
    )
    bpy.utils.register_class(engine)
    try:
        scene.render.engine = "AA_TEST_ENGINE"
        with pytest.raises(reference.ReferenceImageError, match="set it to Cycles, EEVEE or Workbench"):
            reference.render_reference(bpy.context, 1, 64, 48)
    finally:
        scene.render.engine = "CYCLES"
        bpy.utils.unregister_class(engine)
    scene.camera = None
    with pytest.raises(reference.ReferenceImageError, match="no active camera"):
        reference.render_reference(bpy.context, 1, 64, 48)
