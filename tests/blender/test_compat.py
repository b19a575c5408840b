"""operators/adapter/compat.py: the version-dependent accessors work on the Blender under test."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


def test_grease_pencil_and_annotation_accessors(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    compat = aa("operators.adapter.compat")
    gpd = compat.grease_pencil_data().new("GP")
    ob = bpy.data.objects.new("GP", gpd)
    assert ob.type == compat.GP_OBJECT_TYPE
    assert compat.scene_annotation(scene) is None
    ann = compat.annotation_data().new("Notes")
    compat.set_scene_annotation(scene, ann)
    assert compat.scene_annotation(scene) == ann


def test_action_fcurves_sees_camera_data_curves(ext, aa, bpy_module):
    """The lens curve lives on the camera DATA's slot: 4.5's Action.fcurves shim would miss it."""
    bpy = bpy_module
    compat = aa("operators.adapter.compat")
    cam = bpy.data.cameras.new("Cam")
    assert compat.action_fcurves(cam) == []
    cam.lens = 30.0
    cam.keyframe_insert("lens", frame=1)
    cam.shift_x = 0.2
    cam.keyframe_insert("shift_x", frame=5)
    paths = sorted(fc.data_path for fc in compat.action_fcurves(cam))
    assert paths == ["lens", "shift_x"]


def test_image_format_and_engine_ids(ext, aa):
    _, scene = ext
    compat = aa("operators.adapter.compat")
    ims = scene.render.image_settings
    compat.set_image_format(ims, "OPEN_EXR")
    assert ims.file_format == "OPEN_EXR"
    assert compat.image_format_attrs(ims)[-4:] == ("file_format", "color_mode", "color_depth", "exr_codec")
    engine = compat.eevee_engine_id()
    scene.render.engine = engine  # raises TypeError when the id is wrong for this Blender
    assert scene.render.engine == engine


def test_depth_route_restores_the_users_compositor(ext, aa, bpy_module):
    """A user compositor set-up is back exactly as it was after the depth route."""
    bpy = bpy_module
    _, scene = ext
    compat = aa("operators.adapter.compat")
    if hasattr(scene, "compositing_node_group"):  # 5.0: a node group of the user's
        user = bpy.data.node_groups.new("UserComp", "CompositorNodeTree")
        scene.compositing_node_group = user
        with compat.depth_to_composite_output(scene, bpy.context.view_layer):
            assert scene.compositing_node_group != user and bpy.context.view_layer.use_pass_z
        assert scene.compositing_node_group == user and not bpy.context.view_layer.use_pass_z
        assert [g.name for g in bpy.data.node_groups] == ["UserComp"]
    else:  # 4.5: the scene's embedded tree, Render Layers -> Blur -> Composite
        scene.use_nodes = True
        nt = scene.node_tree
        rl = next(n for n in nt.nodes if n.bl_idname == "CompositorNodeRLayers")
        comp = next(n for n in nt.nodes if n.bl_idname == "CompositorNodeComposite")
        blur = nt.nodes.new("CompositorNodeBlur")
        nt.links.new(rl.outputs["Image"], blur.inputs[0])
        nt.links.new(blur.outputs[0], comp.inputs["Image"])
        before = sorted((l.from_node.name, l.to_node.name) for l in nt.links)
        names = sorted(n.name for n in nt.nodes)
        scene.use_nodes = False
        with compat.depth_to_composite_output(scene, bpy.context.view_layer):
            assert scene.use_nodes
        assert not scene.use_nodes
        assert sorted((l.from_node.name, l.to_node.name) for l in nt.links) == before
        assert sorted(n.name for n in nt.nodes) == names and not comp.mute
