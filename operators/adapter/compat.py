"""The one place that knows how Blender versions differ (4.5 LTS, 5.0, 5.1, 5.2 LTS, 5.3).

Everything here is a feature check (`hasattr`, a caught TypeError), never a version-number
comparison, so a later Blender that keeps an API keeps working. Facts checked headless with the
bpy 4.5.15 and 5.0.1 wheels:

| feature              | 5.0                                   | 4.5                                        |
|----------------------|---------------------------------------|--------------------------------------------|
| GP v3 data           | bpy.data.grease_pencils               | bpy.data.grease_pencils_v3                 |
| annotations          | scene.annotation, data.annotations    | scene.grease_pencil, data.grease_pencils   |
| F-curves             | channelbag of the action slot         | same (Action.fcurves shows the first slot) |
| compositor           | scene.compositing_node_group          | scene.use_nodes + scene.node_tree          |
| image format         | media_type + file_format              | file_format only                           |
| material/world nodes | node_tree always there                | node_tree made by use_nodes = True         |
| EEVEE engine id      | BLENDER_EEVEE                         | BLENDER_EEVEE_NEXT                         |

5.2 LTS and 5.3 (Python 3.13, numpy 2; checked with the 5.2.4 and 5.3.0 wheels) behave as 5.0, and
mark for removal in 6.0: Strip.frame_final_start/end/duration (use left_handle/right_handle:
`strip_span`) and MaterialGPencilStyle.show_fill (`gp_show_fill`). In the bpy module
`bpy.app.binary_path` is empty on every version (reference_job.py starts Python there).
"""

from __future__ import annotations

import contextlib

import bpy

# Grease pencil v3 object type (both versions; 4.5 calls the old annotation objects 'GPENCIL').
GP_OBJECT_TYPE = "GREASEPENCIL"


def grease_pencil_data():
    """The bpy.data collection of grease pencil v3 datablocks."""
    if hasattr(bpy.data, "grease_pencils_v3"):
        return bpy.data.grease_pencils_v3
    return bpy.data.grease_pencils


def scene_annotation(scene):
    """The scene's annotation datablock (the 3D viewport's annotation tool), or None."""
    if hasattr(scene, "annotation"):
        return scene.annotation
    return getattr(scene, "grease_pencil", None)


def annotation_data():
    """The bpy.data collection of annotation datablocks."""
    if hasattr(bpy.data, "annotations"):
        return bpy.data.annotations
    return bpy.data.grease_pencils


def set_scene_annotation(scene, annotation) -> None:
    if hasattr(scene, "annotation"):
        scene.annotation = annotation
    else:
        scene.grease_pencil = annotation


def action_fcurves(id_data) -> list:
    """The F-curves that animate `id_data` (its action's slot), [] when it is not animated."""
    ad = getattr(id_data, "animation_data", None)
    if ad is None or ad.action is None:
        return []
    from bpy_extras import anim_utils

    slot = getattr(ad, "action_slot", None)
    channelbag = anim_utils.action_get_channelbag_for_slot(ad.action, slot) if slot is not None else None
    return list(channelbag.fcurves) if channelbag is not None else []


def eevee_engine_id() -> str:
    """The render engine identifier of EEVEE in this Blender."""
    items = {item.identifier for item in bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items}
    return (
        "BLENDER_EEVEE"
        if "BLENDER_EEVEE" in items or "BLENDER_EEVEE_NEXT" not in items
        else "BLENDER_EEVEE_NEXT"
    )


def set_image_format(image_settings, file_format: str) -> None:
    """Set a still-image file format ('PNG', 'OPEN_EXR', ...) on ImageFormatSettings."""
    if hasattr(image_settings, "media_type"):
        image_settings.media_type = "IMAGE"
    image_settings.file_format = file_format


def set_video_format(image_settings) -> None:
    """Set ImageFormatSettings to write a movie through FFmpeg (container and codec: render.ffmpeg)."""
    if hasattr(image_settings, "media_type"):  # media type first: setting it resets file_format
        image_settings.media_type = "VIDEO"
    image_settings.file_format = "FFMPEG"


def node_tree(id_block):
    """The shader node tree of a material or world, made on request where it has none yet."""
    if id_block.node_tree is None:
        id_block.use_nodes = True
    return id_block.node_tree


def image_format_attrs(image_settings) -> tuple[str, ...]:
    """The attribute names of ImageFormatSettings that set_image_format and its callers touch, so a
    caller can save and restore them (media_type first: setting it resets file_format)."""
    names = ("media_type",) if hasattr(image_settings, "media_type") else ()
    return names + ("file_format", "color_mode", "color_depth", "exr_codec")


@contextlib.contextmanager
def depth_to_composite_output(scene, view_layer):
    """Route `view_layer`'s Depth pass to the compositor's output for the duration of the block, so
    that a render writes planar depth (distance along the view axis, scene units) as its image.

    Turns the view layer's Z pass on for the block. The scene's own compositor set-up and the pass
    setting are put back afterwards, and the temporary nodes removed.
    """
    use_pass_z = view_layer.use_pass_z
    view_layer.use_pass_z = True
    try:
        if hasattr(scene, "compositing_node_group"):
            with _depth_route_node_group(scene, view_layer):
                yield
        else:
            with _depth_route_scene_tree(scene, view_layer):
                yield
    finally:
        view_layer.use_pass_z = use_pass_z


@contextlib.contextmanager
def _depth_route_node_group(scene, view_layer):
    """5.0: a temporary compositor node group with a Group Output replaces the scene's."""
    previous = scene.compositing_node_group
    ng = bpy.data.node_groups.new(".animate_anything_depth", "CompositorNodeTree")
    try:
        rl = ng.nodes.new("CompositorNodeRLayers")
        rl.scene = scene
        rl.layer = view_layer.name
        ng.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = ng.nodes.new("NodeGroupOutput")
        ng.links.new(rl.outputs["Depth"], out.inputs[0])
        scene.compositing_node_group = ng
        yield
    finally:
        scene.compositing_node_group = previous
        bpy.data.node_groups.remove(ng)


@contextlib.contextmanager
def _depth_route_scene_tree(scene, view_layer):
    """4.5: the scene's embedded node tree. The user's nodes stay: their Composite outputs are muted and
    detached for the render, a Render Layers -> Composite pair of ours is added, and all is put back."""
    previous_use_nodes = scene.use_nodes
    had_tree = scene.node_tree is not None
    scene.use_nodes = True
    nt = scene.node_tree
    added, saved_links, saved_mute = [], [], []
    try:
        for node in [n for n in nt.nodes if n.bl_idname == "CompositorNodeComposite"]:
            saved_mute.append((node, node.mute))
            for link in node.inputs["Image"].links:
                saved_links.append((link.from_socket, node.inputs["Image"]))
                nt.links.remove(link)
            node.mute = True
        rl = nt.nodes.new("CompositorNodeRLayers")
        added.append(rl)
        rl.scene = scene
        rl.layer = view_layer.name
        comp = nt.nodes.new("CompositorNodeComposite")
        added.append(comp)
        nt.links.new(rl.outputs["Depth"], comp.inputs["Image"])
        nt.nodes.active = comp
        yield
    finally:
        for node in added:
            nt.nodes.remove(node)
        for node, mute in saved_mute:
            node.mute = mute
        for from_socket, to_socket in saved_links:
            nt.links.new(from_socket, to_socket)
        scene.use_nodes = previous_use_nodes
        if not had_tree:  # nothing of the user's to keep: leave no nodes behind
            for node in list(nt.nodes):
                nt.nodes.remove(node)


def strip_span(strip) -> tuple[int, int]:
    """(first frame, end frame exclusive) a Sequencer strip shows: `left_handle`/`right_handle`
    (5.2+; frame_final_start/end are deprecated there and go in 6.0), else frame_final_*."""
    if hasattr(strip, "left_handle"):
        return int(strip.left_handle), int(strip.right_handle)
    return int(strip.frame_final_start), int(strip.frame_final_end)


def strip_duration(strip) -> int:
    """Frames a strip shows (after its handles)."""
    start, end = strip_span(strip)
    return end - start


def gp_show_fill(style) -> bool:
    """Whether a grease pencil material draws its fill: `show_fill` while it exists (5.2 says it
    goes in 6.0), else `is_fill_visible` (the fill's opacity makes it visible)."""
    if hasattr(style, "show_fill"):
        return bool(style.show_fill)
    return bool(style.is_fill_visible)


def gpu_can_draw() -> bool:
    """Whether the `gpu` module can draw in this process: not in background mode (the bpy module,
    `blender -b`), where its shader calls raise SystemError (5.2+ offer gpu.init() for that; the
    overlay does not call it)."""
    if bpy.app.background:
        return False
    try:
        import gpu

        gpu.platform.backend_type_get()
    except (ImportError, SystemError):
        return False
    return True


def line_shader():
    """(shader, wide): the builtin shader for 2D lines of any width, "POLYLINE_UNIFORM_COLOR" (4.5
    and 5.x; uniforms viewportSize, lineWidth, color), else "UNIFORM_COLOR" (wide False: the width
    is gpu.state.line_width_set's)."""
    import gpu

    try:
        return gpu.shader.from_builtin("POLYLINE_UNIFORM_COLOR"), True
    except ValueError:
        return gpu.shader.from_builtin("UNIFORM_COLOR"), False
