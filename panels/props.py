"""Scene settings of Animate Anything: `scene.animate_anything` (saved with the .blend).

Units: frames are scene frames, sizes are pixels of the generated video, fps frames per second.
Settings only: the state of a run lives in memory (operators/adapter/runs.py), never in the file.
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..operators.adapter import model_limits as model_menus
from ..operators.adapter import settings as settings_check
from ..operators.adapter.compat import GP_OBJECT_TYPE

# Identifiers shared with operators/adapter/job_export.py (values written into job.json are lower case).
REFERENCE_SOURCES = (
    ("RENDER", "Render", "Render the first frame from the active camera, with its depth pass"),
    ("FILE", "Image", "Use an image you pick (no depth: the generator assumes a plane)"),
)
RENDER_QUALITIES = (
    ("PREVIEW", "Preview", "Few samples, no larger than the video needs, depth from a cheap pass: seconds"),
    ("FINAL", "Final", "The scene's own samples and size (depth still from a cheap pass)"),
)
DRAG_SOURCES = (
    ("NONE", "None", "No drags: camera motion (and the reference video) only"),
    ("ANNOTATION", "Annotation", "The scene's annotation strokes (3D placement)"),
    ("GREASE_PENCIL", "Grease Pencil", "Strokes of a grease pencil object (all of them when none is picked)"),
)
DRAG_TIMINGS = (
    ("ARC_LENGTH", "Even", "Move along each stroke at constant speed over the frames"),
    ("RECORDED", "As Drawn", "Follow the pace at which each stroke was drawn (its recorded point times)"),
)
DRAG_REGIONS = (
    (
        "AUTO",
        "Objects",
        "A drag moves the whole object it starts on (or the closed outline it starts in; a disc of "
        "Drag Radius on the ground or sky), and the reference render gets a clean plate without it",
    ),
    ("DISCS", "Discs", "Every drag moves a soft disc of Drag Radius around its start (outlines still win)"),
)
MODES = (
    ("preview", "Preview", "Warp the reference image along the flow: seconds on a CPU, nothing to install"),
    ("guided", "Guided", "CogVideoX image-to-video guided by the preview (needs a GPU and the model)"),
    ("animateanything", "AnimateAnything", "The paper's flow-conditioned model (needs trained weights)"),
)


def _changed(_self, _context) -> None:
    # The sidebar's and the polls' "why is this grey" answer is cached (adapter/settings.py).
    settings_check.invalidate()


def _is_grease_pencil(_self, ob) -> bool:
    return ob.type == GP_OBJECT_TYPE


def _layer_names(self, _context, edit_text):
    ob = self.drag_object
    if ob is None or ob.type != GP_OBJECT_TYPE:
        return []
    return [layer.name for layer in ob.data.layers if edit_text.lower() in layer.name.lower()]


class AnimateAnythingSettings(bpy.types.PropertyGroup):
    # Reference image
    reference_source: EnumProperty(
        update=_changed, name="Reference", items=REFERENCE_SOURCES, default="RENDER"
    )
    reference_image: PointerProperty(
        update=_changed,
        name="Image",
        type=bpy.types.Image,
        description="The first frame of the video; centre-cropped to the video's aspect, then resized",
    )
    render_quality: EnumProperty(
        update=_changed,
        name="Quality",
        items=RENDER_QUALITIES,
        default="PREVIEW",
        description="How Generate renders the reference (in a background Blender; the UI stays free)",
    )
    fallback_depth: FloatProperty(
        update=_changed,
        name="Fallback Depth",
        default=0.0,
        min=0.0,
        soft_max=1000.0,
        subtype="DISTANCE",
        description="Distance of the picture plane for an image reference (no depth): 0 = the drags' "
        "depth or the camera's focus object",
    )
    # Frames
    use_scene_range: BoolProperty(
        update=_changed,
        name="Scene Range",
        default=True,
        description="Use the scene's frame range (else the range below)",
    )
    frame_start: IntProperty(
        update=_changed, name="Start", default=1, description="First scene frame of the camera move"
    )
    frame_end: IntProperty(
        update=_changed, name="End", default=49, description="Last scene frame of the camera move"
    )
    num_frames: IntProperty(
        update=_changed,
        name="Frames",
        default=49,
        min=2,
        max=1024,
        description="Frames of the generated video, spread evenly over the range (sub-frames when they "
        "differ); "
        "CogVideoX modes need 4k+1 (49, 81)",
    )
    width: IntProperty(update=_changed, name="Width", default=720, min=16, max=4096, step=8, subtype="PIXEL")
    height: IntProperty(
        update=_changed, name="Height", default=480, min=16, max=4096, step=8, subtype="PIXEL"
    )
    fps: FloatProperty(
        update=_changed,
        name="FPS",
        default=0.0,
        min=0.0,
        max=240.0,
        description="Frame rate of the video; 0 = so that it lasts as long as the frame range plays",
    )
    # Drags
    drag_source: EnumProperty(update=_changed, name="Drags", items=DRAG_SOURCES, default="GREASE_PENCIL")
    drag_object: PointerProperty(
        update=_changed,
        name="Object",
        type=bpy.types.Object,
        poll=_is_grease_pencil,
        description="Grease pencil object",
    )
    drag_layer: StringProperty(
        update=_changed,
        name="Layer",
        default="",
        search=_layer_names,
        description="Layer to read; empty = all visible layers",
    )
    drag_timing: EnumProperty(update=_changed, name="Timing", items=DRAG_TIMINGS, default="ARC_LENGTH")
    # What a drag moves (job.json drag_regions, object_max_share; conditions.npz track_radius).
    drag_regions: EnumProperty(update=_changed, name="Moves", items=DRAG_REGIONS, default="AUTO")
    drag_radius: FloatProperty(
        update=_changed,
        name="Drag Radius",
        subtype="PERCENTAGE",
        default=8.0,
        min=0.5,
        max=50.0,
        precision=1,
        description="Size of the soft disc a drag moves where it starts on no object (the ground, the "
        "sky, anything larger than Object Size), as a percentage of the video's diagonal; the stroke's "
        "thickness plays no part",
    )
    object_max_share: FloatProperty(
        update=_changed,
        name="Object Size",
        subtype="PERCENTAGE",
        default=35.0,
        min=1.0,
        max=100.0,
        precision=0,
        description="Largest share of the frame an object may cover and still move as a whole with a "
        "drag drawn on it; larger ones (a ground plane, a wall) are background: a disc moves there",
    )
    show_drag_overlay: BoolProperty(
        update=_changed,
        name="Show Drags",
        default=True,
        description="In the camera view, draw each drag's path and what it moves (object, outline or "
        "disc) at the first frame",
    )
    reference_video: StringProperty(
        update=_changed,
        name="Motion Video",
        subtype="FILE_PATH",
        default="",
        description="Optional video whose motion to follow",
    )
    # Generation
    mode: EnumProperty(update=_changed, name="Mode", items=MODES, default="preview")
    prompt: StringProperty(
        update=_changed, name="Prompt", default="", description="What the video shows (guided modes)"
    )
    negative_prompt: StringProperty(
        update=_changed, name="Negative", default="", description="What to avoid (guided modes)"
    )
    seed: IntProperty(update=_changed, name="Seed", default=0, min=0)
    steps: IntProperty(update=_changed, name="Steps", default=50, min=1, max=1000)
    guidance_scale: FloatProperty(update=_changed, name="Guidance", default=6.0, min=0.0, max=50.0)
    strength: FloatProperty(
        update=_changed,
        name="Strength",
        default=0.8,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="Guided mode: 1 = plain image-to-video, lower = closer to the preview's motion",
    )
    noise_warp: BoolProperty(
        update=_changed, name="Warp Noise", default=False, description="Guided mode: flow-warped noise"
    )
    model_family: EnumProperty(
        update=_changed,
        name="Model Family",
        items=(
            ("cogvideox", "CogVideoX", "CogVideoX-5b-I2V (720x480, 49 frames) or 1.5 (e.g. 1360x768, 81)"),
            ("wan", "Wan 2.x", "Wan 2.1/2.2 I2V (832x480 or 1280x720, 81 frames), TI2V-5B, Wan-Move"),
        ),
        default="cogvideox",
        description="Guided mode: which image-to-video model family (its folder is in the preferences)",
    )
    # The chosen model's variant (operators/adapter/model_limits.py): what Size and Frames offer.
    cogvideox_variant: EnumProperty(
        update=_changed,
        name="Model Variant",
        items=model_menus.variant_items("cogvideox"),
        default="1.0",
        description="Which CogVideoX checkpoint the model folder holds: its sizes and frame counts",
    )
    wan_variant: EnumProperty(
        update=_changed,
        name="Model Variant",
        items=model_menus.variant_items("wan"),
        default="2.2-i2v-a14b",
        description="Which Wan checkpoint the model folder holds: its sizes, frame counts and fps",
    )
    size: EnumProperty(
        name="Size",
        items=model_menus.size_items,
        get=model_menus.get_size,
        set=model_menus.set_size,
        description="Guided mode: a size the model was trained at (sets Width and Height), or Custom",
    )
    custom_size: BoolProperty(update=_changed, name="Custom Size", default=False, options={"HIDDEN"})
    frames: EnumProperty(
        name="Frames",
        items=model_menus.frame_items,
        get=model_menus.get_frames,
        set=model_menus.set_frames,
        description="Guided mode: a frame count the model can make (sets Frames), or Custom",
    )
    custom_frames: BoolProperty(update=_changed, name="Custom Frames", default=False, options={"HIDDEN"})
    # Time-to-Move, noise warping, LoRA and Wan-Move settings (job.json fields of the same names).
    tweak_index: IntProperty(
        update=_changed,
        name="Tweak Step",
        default=-1,
        min=-1,
        max=1000,
        description="Time-to-Move: the step the whole video starts from the noised preview; -1 = the "
        "family's default (Wan 3, CogVideoX 4 of 50 steps, scaled to Steps). Lower: more freedom outside "
        "the reliable pixels",
    )
    tstrong_index: IntProperty(
        update=_changed,
        name="Strong Step",
        default=-1,
        min=-1,
        max=1000,
        description="Time-to-Move: the preview is re-injected where it is reliable until this step; -1 = "
        "the family's default (Wan 7, CogVideoX 9 of 50 steps, scaled). Higher: more rigid motion",
    )
    noise_degradation: FloatProperty(
        update=_changed,
        name="Noise Degradation",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
        description="Warp Noise: share of fresh noise mixed into the warped noise (0 = warped noise only)",
    )
    lora_scale: FloatProperty(
        update=_changed,
        name="LoRA Scale",
        default=1.0,
        min=-10.0,
        max=10.0,
        description="Strength of the LoRA set in the add-on preferences",
    )
    transformer_file: StringProperty(
        update=_changed,
        name="Transformer File",
        subtype="FILE_PATH",
        default="",
        description="Wan: an original-format transformer (.safetensors, e.g. Wan-Move-14B-480P) loaded over "
        "the Wan model folder's transformer; .pth files must be converted first",
    )
    guidance: EnumProperty(
        update=_changed,
        name="Motion Guidance",
        items=(
            ("ttm", "Time-to-Move", "Follow the preview's motion where it is reliable (dual-clock)"),
            ("sdedit", "Strength", "Denoise the noised preview from Strength (SDEdit)"),
            ("none", "None", "Plain image-to-video (the preview is not used)"),
            ("tracks", "Wan-Move Tracks", "Point tracks of the drags and the camera (Wan-Move weights)"),
        ),
        default="ttm",
        description="Guided mode: how the preview steers the model",
    )
    output_dir: StringProperty(
        update=_changed,
        name="Output",
        subtype="DIR_PATH",
        default="//animate_anything/",
        description="Folder that receives one job folder per run (// = next to the .blend)",
    )
    # Bringing results back
    import_strip: BoolProperty(update=_changed, name="Sequencer Strip", default=True)
    import_background: BoolProperty(update=_changed, name="Camera Background", default=True)
    import_plane: BoolProperty(
        update=_changed, name="Textured Plane", default=False, description="A camera-facing plane"
    )
    auto_import: BoolProperty(update=_changed, name="Import When Done", default=True)


classes = (AnimateAnythingSettings,)


def register():
    bpy.types.Scene.animate_anything = PointerProperty(type=AnimateAnythingSettings)


def unregister():
    del bpy.types.Scene.animate_anything
