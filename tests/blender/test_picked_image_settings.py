"""Picked images: the SAM 2 and Depth Model preferences reach the job, and the sidebar says how a
picked image gets depth when no depth model is set."""

from __future__ import annotations

import types

import pytest

from tests.blender.conftest import submodule
from tests.blender.test_sidebar import _Layout

pytestmark = pytest.mark.blender


def test_model_preferences_reach_the_job_and_the_check(ext, aa, bpy_module):
    bpy = bpy_module
    extension, scene = ext
    scene.camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(scene.camera)
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    prefs.segment_model, prefs.depth_model = "/models/sam2", " /models/depth "
    try:
        spec = aa("operators.adapter.job_export").make_spec(
            bpy.context, scene.animate_anything, reference_source="file"
        )
        assert (spec.segment_model, spec.depth_model) == ("/models/sam2", "/models/depth")
        settings = aa("operators.adapter.preferences").model_settings(bpy.context)
        assert settings["SAM 2 Model"] == "/models/sam2" and settings["Depth Model"] == "/models/depth"
    finally:
        prefs.segment_model = prefs.depth_model = ""
    spec = aa("operators.adapter.job_export").make_spec(
        bpy.context, scene.animate_anything, reference_source="file"
    )
    assert (spec.segment_model, spec.depth_model) == ("", "")


def test_a_picked_image_without_depth_model_says_how_to_get_depth(ext, bpy_module):
    bpy = bpy_module
    extension, scene = ext
    notes_of = submodule("operators.adapter.settings").picked_depth_notes
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    s = scene.animate_anything

    def drawn():
        layout = _Layout()
        bpy.types.ANIMATE_ANYTHING_PT_main_view3d.draw(types.SimpleNamespace(layout=layout), bpy.context)
        return [text for kind, _, text in layout.calls if kind == "label"]

    s.reference_source = "RENDER"
    assert notes_of(bpy.context, s) == [] and not any("flat plane" in t for t in drawn() if t)
    s.reference_source = "FILE"
    notes = notes_of(bpy.context, s)
    assert "flat plane" in notes[0] and any("Depth-Anything-V2-Small-hf" in n for n in notes)
    assert all(n in drawn() for n in notes)
    prefs.depth_model = "/models/depth"
    try:
        assert notes_of(bpy.context, s) == [] and not any("flat plane" in t for t in drawn() if t)
    finally:
        prefs.depth_model = ""
