"""Where results go and what the artist is told: an unsaved file's results go to a folder that
lasts (the preference, default ~/animate_anything) with a warning; a saved file keeps
//animate_anything/; the aspect-ratio crop is named; the new settings are in the sidebar."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender


@pytest.fixture
def prefs(extension, bpy_module):
    p = submodule("operators.adapter.preferences").get_preferences()
    old = p.unsaved_output_dir
    yield p
    p.unsaved_output_dir = old


def test_an_unsaved_file_writes_to_the_preference_folder_with_a_warning(ext, bpy_module, prefs, tmp_path):
    bpy = bpy_module
    _, scene = ext
    settings = submodule("operators.adapter.settings")
    assert not bpy.data.filepath
    assert prefs.unsaved_output_dir == "~/animate_anything"  # the default lasts: under the home folder
    assert settings.output_folder(scene) == Path.home() / "animate_anything"
    assert not str(settings.output_folder(scene)).startswith(bpy.app.tempdir or "/nonexistent")
    prefs.unsaved_output_dir = str(tmp_path / "results")
    assert settings.output_folder(scene) == tmp_path / "results"
    warning = settings.output_warning(scene)
    assert "not saved" in warning and str(tmp_path / "results") in warning
    # Saved: next to the .blend, no warning.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    scene = bpy.context.scene
    assert settings.output_folder(scene) == tmp_path / "animate_anything"
    assert settings.output_warning(scene) == ""


def test_the_aspect_crop_is_named(ext, bpy_module):
    _, scene = ext
    settings = submodule("operators.adapter.settings")
    s = scene.animate_anything
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    s.width, s.height = 720, 480
    warning = settings.crop_warning(scene, s)
    assert "1920x1080" in warning and "720x480" in warning and "sides" in warning
    s.width, s.height = 768, 432  # 16:9 too
    assert settings.crop_warning(scene, s) == ""
    s.width, s.height = 480, 480
    assert "sides" in settings.crop_warning(scene, s)
    scene.render.resolution_x, scene.render.resolution_y = 480, 960
    assert "top and bottom" in settings.crop_warning(scene, s)


def test_a_model_folder_that_does_not_exist_is_refused_before_any_render(ext, bpy_module, tmp_path):
    bpy = bpy_module
    checks = submodule("operators.adapter.settings")
    p = submodule("operators.adapter.preferences").get_preferences()
    s = bpy.context.scene.animate_anything
    old = p.cogvideox_model
    try:
        s.mode = "guided"
        p.cogvideox_model = str(tmp_path / "no-such-model")
        problems = checks.weights_problems(bpy.context, s)
        assert problems and str(tmp_path / "no-such-model") in problems[0]
        p.cogvideox_model = "THUDM/CogVideoX-5b-I2V"  # a hub id: the generator's own check
        assert checks.weights_problems(bpy.context, s) == []
        s.mode = "preview"
        assert checks.weights_problems(bpy.context, s) == []
    finally:
        p.cogvideox_model = old
