"""The object-identity pass and the clean plate of a rendered reference (operators/adapter/identity.py),
in real Blender: aligned with the reference and its depth pixel for pixel, settings and object
colours restored (also after a failure), the same files from the background render child, and
export_job writing object_ids / objects / clean_plate that the generator's validator accepts; a
drag on the ground or the world gives no plate; the Drag Radius setting sets track_radius."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from tests.blender import scene_kit as kit
from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender

W, H = 96, 72  # the job (and, for the export tests, the render) size
STROKE_DEPTH = 2.0  # the drag strokes lie in the plane z = -STROKE_DEPTH
# Planar depth ranges of the scene's objects (camera at the origin looking down -Z).
RANGES = {"A": (4.4, 5.6), "B": (3.1, 3.9), "Ground": (8.8, 9.2)}


@pytest.fixture
def studio(ext, bpy_module, tmp_path):
    """A red cube A and a blue cube B in front of a grey ground (a wall at z = -9 that leaves the
    top rows to the world), rendered flat with Workbench at W x H; a grease pencil drag object."""
    bpy = bpy_module
    _, scene = ext
    compat = submodule("operators.adapter.compat")
    kit.add_camera(bpy, scene)
    kit.add_box(bpy, scene, "Ground", (0, -0.6, -9), (14, 4, 0.2), (0.5, 0.5, 0.5))
    kit.add_box(bpy, scene, "A", (-0.9, 0.0, -5.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0))
    kit.add_box(bpy, scene, "B", (0.6, -0.2, -3.5), (0.6, 0.6, 0.6), (0.0, 0.0, 1.0))
    gp, _ = kit.add_drag_object(bpy, scene, compat)
    kit.flat_workbench(scene, W, H)
    scene.frame_start, scene.frame_end = 1, 5
    s = scene.animate_anything
    s.width, s.height, s.num_frames = W, H, 5
    s.reference_source = "RENDER"
    s.render_quality = "PREVIEW"
    s.drag_source = "GREASE_PENCIL"
    s.drag_object = gp
    s.mode = "preview"
    s.output_dir = str(tmp_path / "jobs")
    scene.frame_set(1)
    return scene, gp


def _fx(scene, width=W) -> float:
    cam = scene.camera.data
    return cam.lens / cam.sensor_width * width


def _to_world(scene, uv):
    """Job pixel (u, v) -> the point in the stroke plane on its ray (render size = job size)."""
    fx = _fx(scene)
    u, v = uv
    return ((u - W / 2) * STROKE_DEPTH / fx, -(v - H / 2) * STROKE_DEPTH / fx, -STROKE_DEPTH)


def _draw(gp, strokes, cyclic=None):
    """Strokes (lists of job pixels) on a new layer of grease pencil `gp`, default point radius."""
    scene = gp.users_scene[0]
    drawing = gp.data.layers.new(f"L{len(gp.data.layers)}").frames.new(1).drawing
    drawing.add_strokes([len(s) for s in strokes])
    points = np.array([_to_world(scene, uv) for s in strokes for uv in s], np.float32)
    drawing.attributes["position"].data.foreach_set("vector", points.ravel())
    if cyclic is not None:
        attr = drawing.attributes.get("cyclic") or drawing.attributes.new("cyclic", "BOOLEAN", "CURVE")
        attr.data.foreach_set("value", np.asarray(cyclic, bool))


def _line(start, offset, n=5):
    start = np.asarray(start, np.float64)
    return [start + t * np.asarray(offset, np.float64) for t in np.linspace(0.0, 1.0, n)]


def _id_of(objects: dict, name: str) -> int:
    (key,) = [k for k, e in objects.items() if e["name"] == name]
    return int(key)


def _centre(mask) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def _grow(mask, k):
    """The mask dilated by k pixels (a square), numpy only."""
    out = mask.copy()
    for _ in range(k):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _shrink(mask, k):
    return ~_grow(~mask, k)


def _settings(bpy, scene):
    """Everything the identity pass may touch, as plain values (object colours included)."""
    r, ims, sh, vs = scene.render, scene.render.image_settings, scene.display.shading, scene.view_settings
    vl = bpy.context.view_layer
    values = [r.engine, r.film_transparent, r.use_compositing, r.use_sequencer, r.use_freestyle]
    values += [r.use_motion_blur, r.filepath, r.resolution_percentage, r.use_border, r.use_single_layer]
    values += [ims.file_format, ims.color_mode, ims.color_depth, ims.exr_codec, scene.display.render_aa]
    values += [sh.light, sh.color_type, sh.show_shadows, sh.show_cavity, sh.show_object_outline]
    values += [sh.show_specular_highlight, sh.use_dof, sh.show_xray, sh.show_backface_culling]
    values += [vs.view_transform, vs.look, vs.exposure, vs.gamma, vs.use_curve_mapping]
    values += [vl.use_grease_pencil, vl.use_pass_z, scene.frame_current, len(bpy.data.node_groups)]
    values.append(sorted(i.name for i in bpy.data.images if i.type != "RENDER_RESULT"))
    values.append(
        sorted((o.name, tuple(round(c, 6) for c in o.color), o.hide_render) for o in bpy.data.objects)
    )
    return values


def _unusual_settings(bpy, scene):
    """Settings that differ from what the identity pass sets, so that a missed restore shows."""
    scene.objects["A"].color = (0.2, 0.3, 0.4, 0.9)
    scene.display.shading.show_shadows = True
    scene.display.shading.show_cavity = True
    scene.display.render_aa = "16"
    scene.render.use_motion_blur = True
    scene.view_settings.exposure = 0.25
    assert scene.view_settings.view_transform != "Standard"


# ----------------------------------------------------------------------------------------------
# The pure parts


def test_object_codes_round_trip_and_the_plate_rule(ext, aa):
    identity = aa("operators.adapter.identity")
    codes = np.array([1, 2, 63, 64, 4095, 4096, identity.MAX_OBJECTS])
    rgba = np.array([identity.code_colour(int(c)) for c in codes], np.float32)[None]
    noisy = rgba + np.float32(0.1 / (identity.ID_LEVELS - 1)) * np.array([1, -1, 1, 0], np.float32)
    assert identity.decode_codes(noisy).tolist() == [codes.tolist()]
    assert identity.decode_codes(rgba * [1, 1, 1, 0]).tolist() == [[0] * len(codes)]  # the world
    half_way = rgba.copy()
    half_way[..., 0] += 0.5 / (identity.ID_LEVELS - 1)  # between two codes: a volume, a blend
    assert identity.decode_codes(half_way).tolist() == [[0] * len(codes)]
    with pytest.raises(ValueError):
        identity.code_colour(0)
    # The plate's rule: the id under floor(start), non-zero, at most max_share of the frame.
    ids = np.zeros((10, 10), np.int32)
    ids[:, :] = 3  # the ground, 100 % minus the rest
    ids[2:4, 2:4] = 1  # 4 %
    ids[6:9, 5:9] = 2  # 12 %
    starts = [[2.9, 3.99], [7.5, 7.0], [0.5, 0.5], [-1.0, 2.0], [np.nan, 1.0], [5.0, 8.9]]
    assert identity.plate_objects(ids, starts, 0.35) == [1, 2]
    assert identity.plate_objects(ids, starts, 0.1) == [1]
    assert identity.plate_objects(ids, np.zeros((0, 2)), 0.35) == []


# ----------------------------------------------------------------------------------------------
# Rendering


@pytest.mark.parametrize("engine", ["BLENDER_WORKBENCH", "EEVEE"])
def test_ids_and_clean_plate_are_aligned_with_the_reference(studio, aa, bpy_module, engine):
    bpy = bpy_module
    scene, gp = studio
    identity = aa("operators.adapter.identity")
    if engine == "EEVEE":
        compat = aa("operators.adapter.compat")
        scene.render.engine = compat.eevee_engine_id()
        for mat in bpy.data.materials:  # EEVEE shades with the node tree, not diffuse_color
            if mat.name in ("A", "B", "Ground"):
                nodes = compat.node_tree(mat).nodes
                bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
                bsdf.inputs["Base Color"].default_value = mat.diffuse_color
        light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        scene.collection.objects.link(light)
    # The render is 160 x 96 (5:3), the job 64 x 48 (4:3): the centre crop applies to everything.
    scene.render.resolution_x, scene.render.resolution_y = 160, 96
    _unusual_settings(bpy, scene)
    before = _settings(bpy, scene)
    plain = identity.render_job_reference(bpy.context, 1, 64, 48, quality="PREVIEW", hide=[gp])
    assert _settings(bpy, scene) == before
    ids, depth, rgb = plain.object_ids, plain.depth, plain.rgb
    assert ids.shape == (48, 64) and ids.dtype == np.int32 and plain.clean_plate_rgb is None
    assert sorted(e["name"] for e in plain.objects.values()) == ["A", "B", "Ground"]  # no drag stroke
    assert sorted(int(k) for k in plain.objects) == [1, 2, 3]
    assert all(e["in_clean_plate"] for e in plain.objects.values())
    # Every pixel at an object's depth carries its id, and only those.
    for name, (z0, z1) in RANGES.items():
        at_depth = (depth > z0) & (depth < z1)
        assert at_depth.sum() > 40, name
        np.testing.assert_array_equal(ids == _id_of(plain.objects, name), at_depth, err_msg=name)
    np.testing.assert_array_equal(ids == 0, np.isinf(depth))
    assert (ids == 0).sum() > 64, "the top rows show the world"
    # ... and the colour render shows the same objects there (Lanczos rings at the edges aside).
    a, b = ids == _id_of(plain.objects, "A"), ids == _id_of(plain.objects, "B")
    c = rgb.astype(int)
    red = c[..., 0] - np.maximum(c[..., 1], c[..., 2]) > 40  # (AgX desaturates EEVEE's red)
    blue = c[..., 2] - np.maximum(c[..., 0], c[..., 1]) > 40
    assert red[_shrink(a, 2)].all() and not red[~_grow(a, 2)].any()
    assert blue[_shrink(b, 2)].all() and not blue[~_grow(b, 2)].any()

    # A drag starting on A (and one on the ground, which is background): A leaves the plate.
    ground = ids == _id_of(plain.objects, "Ground")
    starts = np.array([_centre(a), _centre(_shrink(ground, 3) & (np.arange(48)[:, None] > 40))])
    plated = identity.render_job_reference(
        bpy.context, 1, 64, 48, quality="PREVIEW", hide=[gp], drag_starts=starts, object_max_share=0.35
    )
    assert _settings(bpy, scene) == before
    assert plated.clean_plate and plated.objects == {
        k: {"name": e["name"], "in_clean_plate": e["name"] != "A"} for k, e in plain.objects.items()
    }
    np.testing.assert_array_equal(plated.object_ids, ids)
    plate, plate_depth = plated.clean_plate_rgb, plated.clean_plate_depth
    assert plate.shape == rgb.shape and plate_depth.shape == depth.shape
    # Away from A the plate is the reference: exactly with Workbench beyond the 3 px that Lanczos
    # reaches from A's edge; with EEVEE beyond A's soft contact shadow on the ground (5 px).
    away = ~_grow(a, 5 if engine == "EEVEE" else 3)
    assert np.abs(plate[away].astype(int) - plated.rgb[away]).max() <= (2 if engine == "EEVEE" else 0)
    np.testing.assert_array_equal(plate_depth[~a], depth[~a])
    np.testing.assert_allclose(plate_depth[a], 8.9, atol=1e-3)  # the ground's front, behind A
    inner = _shrink(a, 3)
    grey = plate[inner].astype(int)
    assert np.abs(grey - grey.mean(axis=0)).max() <= 3 and np.ptp(grey.mean(axis=0)) < 3  # the ground
    ground_colour = plate[_shrink(ground, 4)].astype(int).mean(axis=0)
    assert np.abs(grey.mean(axis=0) - ground_colour).max() < 4
    assert scene.objects["A"].hide_render is False and scene.objects["Drags"].hide_render is False


def test_a_collection_instance_carries_its_empty_s_id_and_leaves_the_plate(studio, aa, bpy_module):
    bpy = bpy_module
    scene, gp = studio
    identity = aa("operators.adapter.identity")
    props = bpy.data.collections.new("Props")  # not in the scene: seen only through the instance
    mesh = bpy.data.meshes.new("Prop")
    mesh.from_pydata([(-0.3, -0.3, 0), (0.3, -0.3, 0), (0.3, 0.3, 0), (-0.3, 0.3, 0)], [], [(0, 1, 2, 3)])
    props.objects.link(bpy.data.objects.new("Prop", mesh))
    empty = bpy.data.objects.new("Instance", None)
    empty.instance_type, empty.instance_collection = "COLLECTION", props
    empty.location = (1.5, 0.6, -7.0)
    scene.collection.objects.link(empty)
    plain = identity.render_job_reference(bpy.context, 1, W, H, hide=[gp])
    inst = plain.object_ids == _id_of(plain.objects, "Instance")
    assert inst.sum() > 20 and "Prop" not in [e["name"] for e in plain.objects.values()]
    plated = identity.render_job_reference(bpy.context, 1, W, H, hide=[gp], drag_starts=[_centre(inst)])
    assert [e["name"] for e in plated.objects.values() if not e["in_clean_plate"]] == ["Instance"]
    np.testing.assert_allclose(plated.clean_plate_depth[inst], 8.9, atol=1e-3)  # the ground behind it
    assert empty.hide_render is False


def test_a_failed_identity_render_restores_every_setting(studio, aa, bpy_module, monkeypatch):
    bpy = bpy_module
    scene, gp = studio
    identity, reference = aa("operators.adapter.identity"), aa("operators.adapter.reference")
    _unusual_settings(bpy, scene)
    scene.render.use_freestyle = True
    before = _settings(bpy, scene)
    real = reference._render_still

    def fail_on_ids(scene_, path):
        if path.name == "ids.exr":
            raise reference.ReferenceImageError("the identity render broke")
        return real(scene_, path)

    monkeypatch.setattr(reference, "_render_still", fail_on_ids)
    with pytest.raises(reference.ReferenceImageError, match="identity render broke"):
        identity.render_job_reference(bpy.context, 1, W, H, hide=[gp], drag_starts=[[30.0, 36.0]])
    assert _settings(bpy, scene) == before


def test_the_background_render_child_writes_the_same(studio, aa, bpy_module):
    bpy = bpy_module
    scene, gp = studio
    identity, job = aa("operators.adapter.identity"), aa("operators.adapter.reference_job")
    starts = np.array([[W / 2 + _fx(scene) * -0.9 / 4.5, H / 2]])  # A's front face
    here = identity.render_job_reference(
        bpy.context, 1, W, H, quality="PREVIEW", hide=[gp], drag_starts=starts
    )
    render = job.ReferenceRender(
        bpy.context, 1, W, H, quality="PREVIEW", hide=[gp], drag_starts=starts
    ).start()
    try:
        child = render.wait(timeout=120)
    finally:
        render.close()
    assert isinstance(child, job.Rendered) and child.clean_plate and here.clean_plate
    assert (
        child.objects == here.objects and not child.objects[str(_id_of(here.objects, "A"))]["in_clean_plate"]
    )
    np.testing.assert_array_equal(child.object_ids, here.object_ids)
    np.testing.assert_array_equal(child.depth, here.depth)
    np.testing.assert_array_equal(child.clean_plate_depth, here.clean_plate_depth)
    assert np.abs(child.rgb.astype(int) - here.rgb).max() <= 1
    assert np.abs(child.clean_plate_rgb.astype(int) - here.clean_plate_rgb).max() <= 1
    assert child.render_wh == here.render_wh == (W, H)


# ----------------------------------------------------------------------------------------------
# The job


def _job(aa, job_dir):
    from PIL import Image

    jobfile = aa("blender_animate.job")
    spec, cond = jobfile.load_job(job_dir)  # the generator's own validator
    raw = json.loads((job_dir / "job.json").read_text())
    ref = np.asarray(Image.open(job_dir / "reference.png"))
    return spec, cond, raw, ref, jobfile


def test_export_job_writes_object_ids_objects_and_the_clean_plate(studio, aa, bpy_module, tmp_path):
    """Export Job in this process and in the background (ExportRun, polled by hand): a drag on A
    hides A from the plate; both jobs hold the same object ids and plate."""
    bpy = bpy_module
    scene, gp = studio
    export, export_run = aa("operators.adapter.job_export"), aa("operators.adapter.export_run")
    a_uv = np.array([W / 2 + _fx(scene) * -0.9 / 4.5, H / 2])
    _draw(gp, [_line(a_uv, [10.0, -4.0])])
    job_dir, _ = export.export_job(bpy.context, tmp_path / "here")
    spec, cond, raw, ref, jobfile = _job(aa, job_dir)
    a = _id_of(spec.objects, "A")
    assert raw["clean_plate"] is True and raw["drag_regions"] == "auto" and raw["object_max_share"] == 0.35
    assert raw["objects"][str(a)] == {"name": "A", "in_clean_plate": False}
    assert sorted(e["name"] for e in spec.objects.values() if e["in_clean_plate"]) == ["B", "Ground"]
    ids = cond.object_ids
    assert ids.shape == (H, W) and ids[int(a_uv[1]), int(a_uv[0])] == a
    depth = jobfile.load_depth(job_dir)
    plate_depth = jobfile.load_depth(job_dir, jobfile.CLEAN_PLATE_DEPTH_NPY)
    np.testing.assert_array_equal((depth > 4.4) & (depth < 5.6), ids == a)
    np.testing.assert_allclose(plate_depth[ids == a], 8.9, atol=1e-3)
    assert (job_dir / jobfile.CLEAN_PLATE_PNG).is_file() and spec.info["clean_plate_hides"] == ["A"]

    run = export_run.ExportRun(bpy.context, tmp_path / "background").start(bpy.context)
    deadline = time.monotonic() + 120
    while not run.poll():
        assert time.monotonic() < deadline, run.stage
        time.sleep(0.05)
    assert run.error == ""
    spec2, cond2, raw2, ref2, _ = _job(aa, run.job_dir)
    assert raw2["objects"] == raw["objects"] and raw2["clean_plate"] is True
    np.testing.assert_array_equal(cond2.object_ids, ids)
    np.testing.assert_array_equal(jobfile.load_depth(run.job_dir, jobfile.CLEAN_PLATE_DEPTH_NPY), plate_depth)
    assert np.abs(ref2.astype(int) - ref).max() <= 1


def test_no_plate_for_drags_on_the_ground_or_the_world_or_discs_or_outlines(studio, aa, bpy_module, tmp_path):
    bpy = bpy_module
    scene, gp = studio
    export = aa("operators.adapter.job_export")
    settings = scene.animate_anything

    def exported(name):
        job_dir, _ = export.export_job(bpy.context, tmp_path / name)
        spec, cond, raw, _, jobfile = _job(aa, job_dir)
        assert not (job_dir / jobfile.CLEAN_PLATE_PNG).exists()
        assert sorted(e["name"] for e in spec.objects.values()) == ["A", "B", "Ground"]
        assert all(e["in_clean_plate"] for e in spec.objects.values())
        return spec, cond, raw

    _draw(gp, [_line([W * 0.5, H * 0.9], [12.0, 0.0]), _line([W * 0.5, 2.0], [-8.0, 3.0])])
    spec, cond, raw = exported("ground")  # the ground covers over 35 %; the top rows are the world
    ground = _id_of(spec.objects, "Ground")
    assert raw["clean_plate"] is False and (cond.object_ids == ground).mean() > 0.35
    assert cond.object_ids[2, W // 2] == 0
    # A drag on A with Discs: no object moves, so no plate.
    a_uv = np.array([W / 2 + _fx(scene) * -0.9 / 4.5, H / 2])
    _draw(gp, [_line(a_uv, [8.0, 0.0])])
    settings.drag_regions = "DISCS"
    _, _, raw = exported("discs")
    assert raw["clean_plate"] is False and raw["drag_regions"] == "discs"
    # Back to Objects, but A's drag starts inside a closed outline: the outline wins, no plate.
    settings.drag_regions = "AUTO"
    square = [a_uv + d for d in ([-6, -6], [6, -6], [6, 6], [-6, 6])]
    _draw(gp, [square], cyclic=[True])
    _, cond, raw = exported("outline")
    assert raw["clean_plate"] is False and cond.region_masks.shape[0] == 1
    # Object Size below A's share: A is background too.
    gp.data.layers.remove(gp.data.layers[-1])
    settings.object_max_share = 1.0
    _, cond, raw = exported("small")
    assert raw["clean_plate"] is False and raw["object_max_share"] == pytest.approx(0.01)


def test_drag_radius_setting_gives_the_track_radius(studio, aa, bpy_module, tmp_path):
    bpy = bpy_module
    scene, gp = studio
    export = aa("operators.adapter.job_export")
    settings = scene.animate_anything
    assert settings.drag_radius == pytest.approx(8.0) and settings.object_max_share == pytest.approx(35.0)
    assert settings.drag_regions == "AUTO"
    scene.render.engine = "BLENDER_WORKBENCH"
    settings.reference_source = "FILE"  # no render needed for the tracks
    image = bpy.data.images.new("Ref", W, H)
    settings.reference_image = image
    _draw(gp, [_line([20.0, 50.0], [10.0, 0.0]), _line([70.0, 20.0], [0.0, 6.0])])
    for share in (8.0, 20.0):
        settings.drag_radius = share
        job_dir, _ = export.export_job(bpy.context, tmp_path / f"r{share:g}")
        spec, cond, raw, _, _ = _job(aa, job_dir)
        np.testing.assert_allclose(cond.track_radius, [share / 100.0 * math.hypot(W, H)] * 2, rtol=1e-6)
        assert spec.objects == {} and raw["clean_plate"] is False and not cond.object_ids.any()
