"""export_job: a complete job folder that the generator's validator accepts, or nothing at all."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.blender

W, H = 64, 48


def _scene(bpy, aa, scene, engine="BLENDER_WORKBENCH"):
    """A moving camera looking at a plane 5 units away, one drag stroke, tiny render."""
    compat = aa("operators.adapter.compat")
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.location = (0.0, 0.0, 0.0)
    cam.keyframe_insert("location", frame=1)
    cam.location = (1.0, 0.0, 0.0)
    cam.keyframe_insert("location", frame=17)
    mesh = bpy.data.meshes.new("Plane")
    mesh.from_pydata([(-3, -3, -5), (3, -3, -5), (3, 3, -5), (-3, 3, -5)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("Plane", mesh))
    r = scene.render
    r.engine = engine
    r.resolution_x, r.resolution_y, r.resolution_percentage = 128, 96, 50
    scene.frame_start, scene.frame_end = 1, 17
    gpd = compat.grease_pencil_data().new("Drags")
    ob = bpy.data.objects.new("Drags", gpd)
    scene.collection.objects.link(ob)
    drawing = gpd.layers.new("L").frames.new(1).drawing
    drawing.add_strokes([3])
    pts = np.array([[-0.5, 0.0, -5.0], [0.0, 0.2, -5.0], [0.5, 0.0, -5.0]], np.float32)
    drawing.attributes["position"].data.foreach_set("vector", pts.ravel())
    s = scene.animate_anything
    s.width, s.height, s.num_frames = W, H, 9
    s.drag_source, s.drag_object = "GREASE_PENCIL", ob
    return cam, ob


def _settings_snapshot(bpy, scene):
    r = scene.render
    return (
        scene.frame_current,
        r.filepath,
        r.image_settings.file_format,
        r.resolution_percentage,
        bpy.context.view_layer.use_pass_z,
        sorted(i.name for i in bpy.data.images if i.name != "Render Result"),
        sorted(o.name for o in bpy.data.objects),
        len(bpy.data.node_groups),
    )


def test_export_rendered_job(ext, aa, bpy_module, tmp_path):
    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    job = aa("blender_animate.job")
    camera = aa("blender_animate.camera")
    _scene(bpy, aa, scene)
    video = tmp_path / "motion.MP4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    scene.animate_anything.reference_video = str(video)
    scene.frame_current = 4
    before = _settings_snapshot(bpy, scene)

    job_dir, warnings = export.export_job(bpy.context, tmp_path / "out")
    assert _settings_snapshot(bpy, scene) == before  # nothing in the .blend changed
    assert job_dir.parent == tmp_path / "out" and job_dir.name.startswith("Scene-")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [job_dir.name]  # no partial folder left
    spec, cond = job.load_job(job_dir)
    assert (spec.width, spec.height, spec.num_frames) == (W, H, 9)
    assert spec.reference_source == "render" and spec.reference_video == "reference_video.mp4"
    assert (job_dir / "reference_video.mp4").read_bytes() == video.read_bytes()
    assert spec.fps == pytest.approx(8 * 24 / 16)  # 9 frames lasting as long as frames 1..17 at 24 fps
    assert spec.info["sample_frames"] == [1, 3, 5, 7, 9, 11, 13, 15, 17]
    # K is the render's (64x48 at 50 %) and the job is 64x48: unchanged; c2w moves 1 unit along +x.
    np.testing.assert_allclose(
        cond.K[0], [[50 * 64 / 36, 0, 32], [0, 50 * 64 / 36, 24], [0, 0, 1]], atol=1e-4
    )
    np.testing.assert_allclose(cond.c2w[-1, :3, 3] - cond.c2w[0, :3, 3], [1, 0, 0], atol=1e-5)
    assert cond.tracks.shape == (1, 9, 2) and cond.region_masks.shape == (0, H, W)
    uv, _ = camera.project_points(np.array([[-0.5, 0.0, -5.0]]), cond.c2w[0], cond.K[0])
    np.testing.assert_allclose(cond.tracks[0, 0], uv[0], atol=1e-3)
    depth = job.load_depth(job_dir)
    assert depth.shape == (H, W)
    np.testing.assert_allclose(depth[H // 2, W // 2], 5.0, rtol=1e-4)
    from PIL import Image

    with Image.open(job_dir / "reference.png") as img:
        assert img.size == (W, H) and img.mode == "RGB"
    assert not any("behind" in w for w in warnings)


def test_export_file_reference_crops_like_k(ext, aa, bpy_module, tmp_path):
    """A 16:9 render and a 4:3 job: K is centre-cropped, and so is the picked image."""
    from PIL import Image

    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    job = aa("blender_animate.job")
    camera = aa("blender_animate.camera")
    _scene(bpy, aa, scene)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 90, 100
    picture = np.zeros((90, 160, 3), np.uint8)
    picture[:, 80:] = 255  # right half white: the edge stays at the centre column after the crop
    Image.fromarray(picture).save(tmp_path / "pic.png")
    s = scene.animate_anything
    s.reference_source = "FILE"
    s.reference_image = bpy.data.images.load(str(tmp_path / "pic.png"))
    job_dir, warnings = export.export_job(bpy.context, tmp_path)
    spec, cond = job.load_job(job_dir)
    assert spec.reference_source == "file" and spec.reference_path == str(tmp_path / "pic.png")
    assert not (job_dir / "depth.npy").exists()
    assert spec.fallback_depth == pytest.approx(5.0, rel=1e-4)  # the drag starts on the plane
    render_K = aa("operators.adapter.scene_camera").read_camera(bpy.context, 1, 17, 9).K
    np.testing.assert_allclose(cond.K, camera.rescale_intrinsics(render_K, (160, 90), (W, H)), atol=1e-9)
    ref = np.asarray(Image.open(job_dir / "reference.png"))
    assert ref[:, : W // 2 - 2].max() < 5 and ref[:, W // 2 + 2 :].min() > 250


def test_invalid_settings_are_refused_and_nothing_is_written(ext, aa, bpy_module, tmp_path):
    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    s = scene.animate_anything
    with pytest.raises(export.ExportError, match="add a camera"):
        export.export_job(bpy.context, tmp_path)
    cam, _ = _scene(bpy, aa, scene)
    cases = [
        ("width", 60, "multiple of 8: use 56"),
        ("num_frames", 10, None),  # fine in preview mode
        ("mode", "guided", "cannot make .* with 10 frames: .* pick a Size"),
        ("reference_source", "FILE", "No reference image"),
        ("reference_video", str(tmp_path / "missing.mp4"), "motion video does not exist"),
        ("drag_layer", "Nope", "no layer 'Nope'"),
        ("use_scene_range", False, None),
        ("frame_end", 1, "range 1-1 is empty"),
    ]
    accepted = tmp_path.parent / f"{tmp_path.name}-accepted"
    for name, value, message in cases:
        old = getattr(s, name)
        setattr(s, name, value)
        if message is not None:
            with pytest.raises(export.ExportError, match=message):
                export.export_job(bpy.context, tmp_path)
            setattr(s, name, old)
        else:  # a change that is fine really exports (into another folder) and keeps its value
            job_dir, _ = export.export_job(bpy.context, accepted)
            spec, _ = aa("blender_animate.job").load_job(job_dir)
            assert spec.num_frames == s.num_frames == 10, name
    cam.data.type = "ORTHO"
    s.frame_end = 17
    with pytest.raises(export.ExportError, match="Perspective"):
        export.export_job(bpy.context, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_nothing(ext, aa, bpy_module, tmp_path, monkeypatch):
    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    job = aa("blender_animate.job")
    _scene(bpy, aa, scene)

    def broken_save(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(job.Conditions, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export.export_job(bpy.context, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_operator(ext, aa, bpy_module, tmp_path):
    bpy = bpy_module
    _, scene = ext
    with pytest.raises(RuntimeError, match="No scene camera"):
        bpy.ops.animate_anything.export_job(directory=str(tmp_path))
    _scene(bpy, aa, scene)
    assert bpy.ops.animate_anything.export_job(directory=str(tmp_path)) == {"FINISHED"}
    (job_dir,) = list(tmp_path.iterdir())
    aa("blender_animate.job").load_job(job_dir)
    # A second export makes a second folder, never overwrites the first.
    assert bpy.ops.animate_anything.export_job(directory=str(tmp_path)) == {"FINISHED"}
    assert len(list(tmp_path.iterdir())) == 2


def test_downloads_need_blenders_online_access(ext, aa, bpy_module, tmp_path):
    """The preference alone does not let the generator download: Blender's "Allow Online Access"
    (off in the bpy module, as in a fresh Blender) must be on too."""
    bpy = bpy_module
    extension, scene = ext
    _scene(bpy, aa, scene)
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    prefs.allow_download = True
    try:
        assert bpy.app.online_access is False
        job_dir, _ = aa("operators.adapter.job_export").export_job(bpy.context, str(tmp_path))
        assert aa("blender_animate.job").read_spec(job_dir).allow_download is False
    finally:
        prefs.allow_download = False


def test_model_family_guidance_and_lora_reach_the_job(ext, aa, bpy_module, tmp_path):
    """Mode guided's family picks its model preference; guidance and the LoRA preference are exported."""
    bpy = bpy_module
    extension, scene = ext
    _scene(bpy, aa, scene)
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    s = scene.animate_anything
    prefs.cogvideox_model, prefs.wan_model, prefs.lora = (
        "/models/cog",
        "/models/wan",
        "/models/gwtf.safetensors",
    )
    try:
        spec = aa("operators.adapter.job_export").make_spec(bpy.context, s, reference_source="render")
        assert (spec.model_family, spec.guidance, spec.model) == ("cogvideox", "ttm", "/models/cog")
        s.model_family, s.guidance = "wan", "sdedit"
        spec = aa("operators.adapter.job_export").make_spec(bpy.context, s, reference_source="render")
        assert (spec.model_family, spec.guidance, spec.model) == ("wan", "sdedit", "/models/wan")
        assert spec.lora == "/models/gwtf.safetensors"
    finally:
        prefs.cogvideox_model = prefs.wan_model = prefs.lora = ""


def test_a_read_only_or_full_output_folder_is_named(ext, aa, bpy_module, tmp_path, monkeypatch):
    """[Errno 30] / [Errno 28] became a message naming the folder and what to do (issue 10,
    case 12), before any rendering for a folder that cannot be written at all; nothing is left."""
    import errno

    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    job = aa("blender_animate.job")
    _scene(bpy, aa, scene)
    folder = tmp_path / "renders"
    folder.mkdir()
    real_mkdir = type(folder).mkdir
    rendered = []
    monkeypatch.setattr(export.identity, "render_job_reference", lambda *a, **k: rendered.append(1) or 1 / 0)

    def read_only(self, *args, **kwargs):
        if self.parent == folder:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(folder), "mkdir", read_only)
    with pytest.raises(export.OutputFolderError) as info:
        export.export_job(bpy.context, folder)
    assert str(info.value) == (
        f"the output folder {folder} is on a read-only disk (Read-only file system), "
        "or pick another Output folder"
    )
    assert isinstance(info.value, OSError) and rendered == []  # refused before rendering
    monkeypatch.undo()

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(job.Conditions, "save", full)
    with pytest.raises(export.ExportError, match=f"the disk holding the output folder {folder} is full"):
        export.export_job(bpy.context, folder)
    assert list(folder.iterdir()) == []
    with pytest.raises(RuntimeError, match="is full"):  # the operator reports it as it is
        bpy.ops.animate_anything.export_job(directory=str(folder))


def test_the_job_folder_has_the_modes_of_ordinary_files(ext, aa, bpy_module, tmp_path):
    """A farm worker running as another user can read the job (issue 10, case 13)."""
    import os
    import stat

    bpy = bpy_module
    _, scene = ext
    _scene(bpy, aa, scene)
    old = os.umask(0o022)
    try:
        job_dir, _ = aa("operators.adapter.job_export").export_job(bpy.context, tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o755
    for p in job_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name
