"""Add-on preferences: where the generator runs and which models it uses (saved with Blender's
preferences, not the .blend). Read through operators/adapter/preferences.py; written into each
job's job.json by operators/adapter/job_export.py."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ..operators.adapter import checks
from ..operators.adapter.preferences import ADDON_PACKAGE

DEVICES = (
    ("auto", "Auto", "CUDA when there is a GPU, else Apple MPS, else the CPU"),
    ("cuda", "CUDA", "An NVIDIA GPU"),
    ("mps", "Apple GPU", "Apple silicon (MPS)"),
    ("cpu", "CPU", "The processor (preview mode runs here in seconds; the models are very slow)"),
)
DTYPES = (
    ("auto", "Auto", "bf16 where the GPU supports it, else fp16 on GPUs, fp32 on the CPU"),
    ("bf16", "bfloat16", ""),
    ("fp16", "float16", ""),
    ("fp32", "float32", ""),
)
OFFLOADS = (
    ("auto", "Auto", "Pick from the free GPU memory"),
    ("none", "None", "Everything on the GPU (fastest; CogVideoX-5B needs about 24 GB)"),
    ("model", "Model", "Move whole models to the GPU when they run"),
    ("sequential", "Sequential", "Move layer by layer (slowest, least memory)"),
    ("group", "Group", "Move groups of layers with prefetching"),
)


def _keep_ready_changed(prefs, _context) -> None:
    if not prefs.keep_generator_ready:  # switched off: the waiting one goes now
        from ..blender_animate.addon import standby

        standby.stop()


class AnimateAnythingPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    python_path: StringProperty(
        name="Generator Python",
        subtype="FILE_PATH",
        default="",
        description="Python interpreter of an environment with torch and diffusers for the guided modes; "
        "empty = Blender's own Python (preview mode only)",
    )
    cogvideox_model: StringProperty(
        name="CogVideoX Model",
        subtype="DIR_PATH",
        default="",
        description="A local folder with a CogVideoX image-to-video checkpoint, or a Hugging Face id",
    )
    wan_model: StringProperty(
        name="Wan Model",
        subtype="DIR_PATH",
        default="",
        description="A local folder with a Wan 2.x image-to-video checkpoint (diffusers layout) or a Hugging "
        "Face id; empty = Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    )
    lora: StringProperty(
        name="LoRA",
        subtype="FILE_PATH",
        default="",
        description="Optional LoRA (.safetensors) loaded on the guided model, e.g. Go-with-the-Flow's",
    )
    animateanything_model: StringProperty(
        name="AnimateAnything Weights",
        subtype="DIR_PATH",
        default="",
        description="A local folder with trained AnimateAnything weights",
    )
    # Picked images (Reference = Image): optional models in the transformers layout, safetensors.
    segment_model: StringProperty(
        name="SAM 2 Model",
        subtype="DIR_PATH",
        default="",
        description="Optional: a SAM 2 folder (transformers layout, e.g. facebook/sam2.1-hiera-tiny) that "
        "finds the region under a drag on a picked image; empty = colours and edges",
    )
    depth_model: StringProperty(
        name="Depth Model",
        subtype="DIR_PATH",
        default="",
        description="Optional: a Depth Anything V2 folder (transformers layout, e.g. "
        "depth-anything/Depth-Anything-V2-Small-hf) that gives a picked image depth; empty = a flat plane",
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    dtype: EnumProperty(name="Precision", items=DTYPES, default="auto")
    offload: EnumProperty(name="Offload", items=OFFLOADS, default="auto")
    allow_download: BoolProperty(
        name="Allow Downloads",
        default=False,
        description="Let the generator download model weights it does not find locally (many GB)",
    )
    keep_generator_ready: BoolProperty(
        name="Keep Generator Ready",
        default=True,
        description="After each run, start the next generator in the background and let it load its "
        "libraries, so that the next Generate starts at once (about half a second sooner; it waits "
        "with about 200 MB of memory, and ends with Blender)",
        update=_keep_ready_changed,
    )

    unsaved_output_dir: StringProperty(
        name="Unsaved Files Output",
        subtype="DIR_PATH",
        default="~/animate_anything",
        description="Where the results of a file that is not saved yet go (saved files: next to the .blend)",
    )
    farm_address: StringProperty(
        name="Farm Address",
        default="",
        description="The Ray cluster Submit to Farm uses (HOST:6379, ray://HOST:10001 or auto); empty runs "
        "a private farm on this machine (docs/farm.md). Another machine needs Blender's online access",
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column()
        col.prop(self, "unsaved_output_dir")
        col.prop(self, "python_path")
        col.prop(self, "keep_generator_ready")
        col.prop(self, "cogvideox_model")
        col.prop(self, "wan_model")
        col.prop(self, "lora")
        col.prop(self, "animateanything_model")
        col.prop(self, "segment_model")
        col.prop(self, "depth_model")
        col.prop(self, "farm_address")
        col = layout.column(heading="Memory")
        col.prop(self, "device")
        col.prop(self, "dtype")
        col.prop(self, "offload")
        col.prop(self, "allow_download")
        layout.operator("animate_anything.check_generator", icon="CHECKMARK")
        draw_check_result(layout)
        layout.operator("animate_anything.create_environment", icon="CONSOLE")


def draw_check_result(layout) -> None:
    """The last Check Generator result (kept by operators/adapter/checks.py; nothing computed here)."""
    if checks.is_checking():
        layout.label(text="Checking the generator's Python...", icon="SORTTIME")
        return
    result = checks.last_result()
    if result is None:
        return
    box = layout.box()
    col = box.column(align=True)
    row = col.row()
    row.alert = not result.ok
    row.label(text=result.headline, icon="CHECKMARK" if result.ok else "ERROR")
    for line in result.display:
        col.label(text=line)


classes = (AnimateAnythingPreferences,)
