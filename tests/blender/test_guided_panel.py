"""The guided mode's panel offers only what the chosen model can do (real bpy): Model Variant per
family, Size and Frames menus that write width, height and num_frames, the settings check refusing
what the model cannot make, and the Time-to-Move / noise / LoRA / Wan-Move settings in job.json."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender


class _Recorder:
    """A layout that records prop(data, name) and label(text=...) calls."""

    def __init__(self):
        object.__setattr__(self, "props", [])
        object.__setattr__(self, "labels", [])

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split"):
            return lambda *a, **k: self
        if name == "prop":
            return lambda data, prop, **k: self.props.append(prop)
        if name == "label":
            return lambda *a, **k: self.labels.append(k.get("text", a[0] if a else ""))
        return lambda *a, **k: None

    def __setattr__(self, name, value):  # use_property_split, active, alert, ...
        pass


def _draw(bpy, panel: str) -> _Recorder:
    layout = _Recorder()
    getattr(bpy.types, f"ANIMATE_ANYTHING_PT_{panel}_view3d").draw(
        types.SimpleNamespace(layout=layout), bpy.context
    )
    return layout


def _camera_scene(bpy, scene):
    """A camera moving along +x over frames 1-81 looking at a plane; the guided mode."""
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.keyframe_insert("location", frame=1)
    cam.location = (1.0, 0.0, 0.0)
    cam.keyframe_insert("location", frame=81)
    mesh = bpy.data.meshes.new("Plane")
    mesh.from_pydata([(-3, -3, -5), (3, -3, -5), (3, 3, -5), (-3, 3, -5)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(bpy.data.objects.new("Plane", mesh))
    r = scene.render
    r.engine = "BLENDER_WORKBENCH"
    r.resolution_x, r.resolution_y, r.resolution_percentage = 832, 480, 100
    scene.frame_start, scene.frame_end = 1, 81
    s = scene.animate_anything
    s.mode, s.drag_source, s.render_quality = "guided", "NONE", "PREVIEW"
    return s


def test_size_and_frame_menus_follow_the_family_and_variant(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    menus = aa("operators.adapter.model_limits")
    s = scene.animate_anything
    s.mode = "guided"
    assert (s.model_family, s.cogvideox_variant, s.wan_variant) == ("cogvideox", "1.0", "2.2-i2v-a14b")

    def ids(items):
        return [i[0] for i in items]

    # CogVideoX 1.0: exactly 720x480 and 49 frames; Blender refuses any other item.
    assert ids(menus.size_items(s)) == ["720x480", "CUSTOM"]
    assert ids(menus.frame_items(s)) == ["49", "CUSTOM"]
    s.width, s.height, s.num_frames = 720, 480, 49
    assert (s.size, s.frames) == ("720x480", "49")
    with pytest.raises(TypeError):
        s.size = "832x480"
    # Wan 2.2 A14B (the family's default): 480P and 720P, both orientations; 81 frames at 16 fps.
    s.model_family = "wan"
    assert ids(menus.size_items(s)) == ["832x480", "480x832", "1280x720", "720x1280", "CUSTOM"]
    assert ids(menus.frame_items(s)) == ["17", "33", "49", "65", "81", "CUSTOM"]
    assert menus.frame_items(s)[4][1] == "81 (5 s at 16 fps, trained)"
    assert s.size == "CUSTOM"  # 720x480 is not one of Wan's sizes
    s.size = "480x832"
    assert (s.width, s.height, s.custom_size) == (480, 832, False)
    s.frames = "81"
    assert s.num_frames == 81
    with pytest.raises(TypeError):
        s.frames = "121"
    # TI2V-5B: 1280x704 and 121 frames at 24 fps.
    s.wan_variant = "2.2-ti2v-5b"
    assert ids(menus.size_items(s)) == ["1280x704", "704x1280", "CUSTOM"]
    s.size, s.frames = "1280x704", "121"
    assert (s.width, s.height, s.num_frames) == (1280, 704, 121)
    # Custom keeps the typed values and shows the fields.
    s.size = "CUSTOM"
    assert s.size == "CUSTOM" and (s.width, s.height) == (1280, 704)
    props = _draw(bpy, "main").props
    assert {"model_family", "wan_variant", "size", "width", "height", "frames", "fps"} <= set(props)
    assert "num_frames" not in props
    s.size = "704x1280"
    props = _draw(bpy, "main").props
    assert "size" in props and "width" not in props and "height" not in props
    # Back on CogVideoX 1.5: the items follow (and the Wan choice is kept for later).
    s.model_family, s.cogvideox_variant = "cogvideox", "1.5"
    assert ids(menus.size_items(s)) == ["1360x768", "768x1360", "CUSTOM"]
    assert ids(menus.frame_items(s))[-2] == "161" and s.wan_variant == "2.2-ti2v-5b"
    labels = _draw(bpy, "main").labels
    assert labels[0] == "CogVideoX 1.5 5B-I2V: 81 frames at 16 fps"
    # The preview mode keeps the plain fields.
    s.mode = "preview"
    props = _draw(bpy, "main").props
    assert {"num_frames", "width", "height"} <= set(props) and "size" not in props


def test_what_the_model_cannot_make_is_refused_before_export(ext, aa, bpy_module, tmp_path):
    bpy = bpy_module
    _, scene = ext
    settings = aa("operators.adapter.settings")
    export = aa("operators.adapter.job_export")
    s = _camera_scene(bpy, scene)
    s.model_family, s.wan_variant = "wan", "2.2-ti2v-5b"
    s.width, s.height, s.num_frames = 1280, 720, 121  # 720 is not a multiple of 32
    problems = settings.settings_problems(bpy.context, fresh=True)
    assert len(problems) == 1
    assert problems[0].startswith("Wan 2.2 TI2V-5B cannot make 1280x720 with 121 frames: it can do")
    assert "multiples of 32" in problems[0] and "Size (1280x704, 704x1280)" in problems[0]
    with pytest.raises(export.ExportError, match="cannot make 1280x720"):
        export.export_job(bpy.context, tmp_path)
    s.height = 704
    assert settings.settings_problems(bpy.context) == []  # the Size update forgot the cached answer
    s.num_frames = 81  # 4N+1: possible, not trained at: a note, not a problem
    assert settings.settings_problems(bpy.context) == []
    assert "Wan 2.2-ti2v-5b was trained at 121 frames, not 81" in _draw(bpy, "main").labels
    # CogVideoX 1.0 takes exactly 720x480x49.
    s.model_family = "cogvideox"
    (problem,) = settings.settings_problems(bpy.context)
    assert "exactly 720x480 pixels and 49 frames" in problem
    s.width, s.height, s.num_frames = 720, 480, 49
    # Time-to-Move steps outside the step count.
    s.steps, s.tweak_index, s.tstrong_index = 20, 12, 8
    (problem,) = settings.settings_problems(bpy.context)
    assert "tweak_index (12) <= tstrong_index (8)" in problem and "-1 (the defaults)" in problem
    s.tweak_index = s.tstrong_index = -1
    # Wan-Move tracks on CogVideoX.
    s.guidance = "tracks"
    (problem,) = settings.settings_problems(bpy.context)
    assert "Wan-Move Tracks need Wan-Move weights" in problem
    s.guidance = "ttm"
    # A pickled transformer file: the generator's convert message.
    s.model_family, s.wan_variant = "wan", "2.1-i2v"
    s.width, s.height, s.num_frames = 832, 480, 81
    pth = tmp_path / "Wan-Move-14B-480P.pth"
    pth.write_bytes(b"not really")
    s.transformer_file = str(pth)
    (problem,) = settings.settings_problems(bpy.context)
    assert "Wan-Move-14B-480P.pth is a pickled checkpoint" in problem
    assert aa("blender_animate.model_limits").CONVERT_HINT in problem
    s.transformer_file = str(tmp_path / "missing.safetensors")
    (problem,) = settings.settings_problems(bpy.context)
    assert "does not exist or is not a .safetensors file" in problem
    assert not any(p.name != pth.name for p in tmp_path.iterdir())  # nothing was exported


def test_the_generation_panel_shows_what_the_guidance_uses(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    s = scene.animate_anything
    s.mode, s.model_family = "guided", "wan"
    layout = _draw(bpy, "generation")
    assert {"guidance", "tweak_index", "tstrong_index", "noise_warp", "transformer_file"} <= set(layout.props)
    assert "strength" not in layout.props and "noise_degradation" not in layout.props
    assert "Steps used: tweak 3, strong 7 of 50 (-1 = default)" in layout.labels
    assert {"lora", "lora_scale"} <= set(layout.props)  # the LoRA preference next to its scale
    s.steps = 20
    assert "Steps used: tweak 1, strong 3 of 20 (-1 = default)" in _draw(bpy, "generation").labels
    s.guidance, s.noise_warp, s.model_family = "sdedit", True, "cogvideox"
    layout = _draw(bpy, "generation")
    assert {"strength", "noise_degradation"} <= set(layout.props)
    assert not {"tweak_index", "transformer_file"} & set(layout.props)


def test_the_new_settings_arrive_in_job_json(ext, aa, bpy_module, tmp_path):
    bpy = bpy_module
    extension, scene = ext
    export = aa("operators.adapter.job_export")
    job = aa("blender_animate.job")
    s = _camera_scene(bpy, scene)
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    weights = tmp_path / "Wan-Move-14B-480P.safetensors"
    weights.write_bytes(b"{}")
    s.model_family, s.wan_variant, s.size, s.frames = "wan", "2.1-i2v", "832x480", "81"
    s.guidance, s.tweak_index, s.tstrong_index = "ttm", 2, 5
    s.noise_warp, s.noise_degradation, s.lora_scale = True, 0.25, 0.75
    s.transformer_file, s.fps = str(weights), 16.0
    prefs.lora = str(tmp_path / "gwtf.safetensors")
    try:
        job_dir, _ = export.export_job(bpy.context, tmp_path / "jobs")
    finally:
        prefs.lora = ""
    raw = json.loads((job_dir / "job.json").read_text())
    got = {k: raw[k] for k in ("tweak_index", "tstrong_index", "noise_degradation", "lora_scale")}
    assert got == {"tweak_index": 2, "tstrong_index": 5, "noise_degradation": 0.25, "lora_scale": 0.75}
    assert (raw["width"], raw["height"], raw["num_frames"], raw["fps"]) == (832, 480, 81, 16.0)
    assert raw["transformer_file"] == str(weights) and raw["lora"] == str(tmp_path / "gwtf.safetensors")
    assert (raw["model_family"], raw["guidance"], raw["info"]["model_variant"]) == ("wan", "ttm", "2.1-i2v")
    spec, cond = job.load_job(job_dir)  # the core schema accepts them
    assert spec.noise_degradation == 0.25 and cond.c2w.shape == (81, 4, 4)
    assert np.asarray(cond.c2w[-1, :3, 3]) == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    # SDEdit's strength; the transformer file is a Wan setting only.
    s.guidance, s.strength, s.model_family, s.size, s.frames = "sdedit", 0.6, "cogvideox", "720x480", "49"
    spec = export.make_spec(bpy.context, s, reference_source="render")
    assert (spec.guidance, spec.strength, spec.transformer_file) == ("sdedit", pytest.approx(0.6), "")
    # Range checks of the core schema hold for the panel's values too.
    s.tweak_index = -1
    spec = export.make_spec(bpy.context, s, reference_source="render")
    assert (spec.tweak_index, spec.tstrong_index) == (-1, 5)
    assert submodule("operators.adapter.model_limits").variant_of(s).name == "1.0"


def test_a_model_folder_of_another_variant_is_refused_before_any_render(ext, aa, bpy_module, tmp_path):
    """The Wan model folder holds TI2V-5B (its configs say so) while Model Variant is A14B: Generate
    names both before it renders anything; matching the variant clears it."""
    bpy = bpy_module
    extension, scene = ext
    rules = aa("blender_animate.model_limits")
    settings = aa("operators.adapter.settings")
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    transformer, vae, index = rules.NOMINAL_CONFIGS[("wan", "2.2-ti2v-5b")]
    for part, cfg in (("transformer", transformer), ("vae", vae)):
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    s = scene.animate_anything
    s.mode, s.model_family = "guided", "wan"
    prefs.wan_model = str(tmp_path)
    try:
        (problem,) = settings.weights_problems(bpy.context, s)
        assert (
            f"the model folder {tmp_path} holds Wan 2.2 TI2V-5B but Model Variant is Wan 2.2 I2V-A14B"
            in problem
        )
        s.wan_variant = "2.2-ti2v-5b"
        assert settings.weights_problems(bpy.context, s) == []
    finally:
        prefs.wan_model = ""
