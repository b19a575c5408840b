"""The "Animate" sidebar tab of the 3D viewport and the Sequencer. Thin: draws scene settings and
calls operators; computes nothing beyond the cheap checks that say why a button is grey.

Generate or Cancel, the progress bar and the last message follow the run this Blender follows
(operators/adapter/runs.py, in memory). The reasons why the buttons are grey are the cached
`settings_problems` (operators/adapter/settings.py). "Encode MP4" shows when the last job has PNG
frames but no MP4 (a generator without PyAV); that check touches the disk, so its answer is cached
per job folder for `ENCODE_CHECK_SECONDS`. Operators are named by their idname, never imported.
"""

from __future__ import annotations

import time

import bpy

from ..operators.adapter import encoding, farm, model_limits, overlay, runs, settings
from ..operators.adapter.preferences import get_preferences

CATEGORY = "Animate"
ENCODE_CHECK_SECONDS = 2.0  # how long the "job needs encoding" answer is reused by draw()

_encode_cache: dict[str, tuple[float, bool]] = {}


def job_needs_encoding(job_dir: str) -> bool:
    """encoding.needs_encoding(job_dir), asked at most every ENCODE_CHECK_SECONDS per folder."""
    if not job_dir:
        return False
    now = time.monotonic()
    cached = _encode_cache.get(job_dir)
    if cached is not None and now - cached[0] < ENCODE_CHECK_SECONDS:
        return cached[1]
    answer = encoding.needs_encoding(job_dir)
    if len(_encode_cache) > 16:
        _encode_cache.clear()
    _encode_cache[job_dir] = (now, answer)
    return answer


def draw_reasons(layout, reasons, limit: int = 3) -> None:
    """Why the actions are grey, one alert line each."""
    col = layout.column(align=True)
    col.alert = True
    for reason in reasons[:limit]:
        col.label(text=reason, icon="ERROR")


def _settings_layout(layout, context):
    """(layout set to Blender's property-split style, scene.animate_anything)."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout, context.scene.animate_anything


class _Base:
    bl_region_type = "UI"
    bl_category = CATEGORY

    @classmethod
    def poll(cls, context):
        return getattr(context.scene, "animate_anything", None) is not None


class _Main(_Base):
    bl_label = "Animate Anything"

    def draw(self, context):
        layout, s = _settings_layout(self.layout, context)
        layout.prop(s, "mode")
        col = layout.column()
        col.prop(s, "reference_source", expand=True)
        if s.reference_source == "FILE":
            col.template_ID(s, "reference_image", open="image.open")
            col.prop(s, "fallback_depth")
            for i, note in enumerate(settings.picked_depth_notes(context, s)):  # no depth model: a plane
                col.label(text=note, icon="INFO" if i == 0 else "BLANK1")
        else:
            col.prop(s, "render_quality")
        col = layout.column(align=True)
        col.prop(s, "use_scene_range")
        sub = col.column(align=True)
        sub.enabled = not s.use_scene_range
        sub.prop(s, "frame_start")
        sub.prop(s, "frame_end")
        if s.mode == "guided":
            draw_model_sizes(layout, context, s)
        else:
            col = layout.column(align=True)
            col.prop(s, "num_frames")
            col.prop(s, "width")
            col.prop(s, "height")
            col.prop(s, "fps")
        crop = settings.crop_warning(context.scene, s)
        if crop:
            layout.label(text=crop, icon="INFO")
        for note in settings.limit_notes(s):  # Blender's silent clamps (2000 frames -> 1024)
            layout.label(text=note, icon="INFO")


def draw_model_sizes(layout, context, s) -> None:
    """Guided mode: the model (family, variant), then only the sizes and frame counts it can make
    (Custom shows the typed fields), its fps, and what it was not trained at."""
    col = layout.column(align=True)
    col.prop(s, "model_family")
    col.prop(s, f"{model_limits.family_of(s)}_variant")
    col = layout.column(align=True)
    col.prop(s, "size")
    if s.size == model_limits.CUSTOM:
        col.prop(s, "width")
        col.prop(s, "height")
    col.prop(s, "frames")
    if s.frames == model_limits.CUSTOM:
        col.prop(s, "num_frames")
    col.prop(s, "fps")
    fps = settings.video_fps(context.scene, s)
    for i, note in enumerate(model_limits.model_notes(s, fps)):
        layout.label(text=note, icon="INFO" if i == 0 else "BLANK1")


class _Drags(_Base):
    bl_label = "Drags and Motion"

    def draw(self, context):
        layout, s = _settings_layout(self.layout, context)
        layout.prop(s, "drag_source")
        if s.drag_source == "GREASE_PENCIL":
            layout.prop(s, "drag_object")
            row = layout.row()
            row.enabled = s.drag_object is not None
            row.prop(s, "drag_layer", icon="OUTLINER_DATA_GP_LAYER")
        if s.drag_source != "NONE":
            layout.prop(s, "drag_timing", expand=True)
            layout.prop(s, "drag_regions", expand=True)
            layout.prop(s, "drag_radius")
            row = layout.row()
            row.enabled = s.drag_regions == "AUTO"
            row.prop(s, "object_max_share")
            layout.prop(s, "show_drag_overlay")
            draw_drag_list(layout, context)
        layout.prop(s, "reference_video")


def draw_drag_list(layout, context) -> None:
    """Each drag and what it moves (object name, outline N, disc of R px): the adapter's cached
    overlay (operators/adapter/overlay.py), never computed here."""
    ov = overlay.cached(context)
    if ov is None or not ov.drags:
        return
    col = layout.column(align=True)
    for label, moves in ov.rows():
        split = col.split(factor=0.6)
        split.label(text=label, icon="STROKE")
        split.label(text=moves)


class _Generation(_Base):
    bl_label = "Generation"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout, s = _settings_layout(self.layout, context)
        layout.prop(s, "prompt")
        layout.prop(s, "negative_prompt")
        col = layout.column(align=True)
        col.prop(s, "seed")
        col.prop(s, "steps")
        col.prop(s, "guidance_scale")
        col = layout.column()
        col.active = s.mode == "guided"
        col.prop(s, "guidance")
        if s.guidance == "ttm":
            sub = col.column(align=True)
            sub.prop(s, "tweak_index")
            sub.prop(s, "tstrong_index")
            note = model_limits.ttm_default_note(s)
            if note:
                sub.label(text=note, icon="INFO")
        if s.guidance == "sdedit":
            col.prop(s, "strength")
        col.prop(s, "noise_warp")
        if s.noise_warp:
            col.prop(s, "noise_degradation")
        prefs = get_preferences(context)
        if prefs is not None:
            col.prop(prefs, "lora")  # the preference, shown next to its scale
            sub = col.row()
            sub.active = bool(prefs.lora)
            sub.prop(s, "lora_scale")
        if s.model_family == "wan":
            col.prop(s, "transformer_file")


class _Output(_Base):
    bl_label = "Output"

    def draw(self, context):
        layout, s = _settings_layout(self.layout, context)
        layout.prop(s, "output_dir")
        col = layout.column(heading="Import", align=True)
        col.prop(s, "auto_import")
        col.prop(s, "import_strip")
        col.prop(s, "import_background")
        col.prop(s, "import_plane")

        col = layout.column(align=True)
        col.scale_y = 1.3
        running = runs.is_running()
        mine = runs.run_for(context.scene)
        if running:
            run = runs.active_run()
            if run is mine:
                col.progress(factor=run.fraction, text=run.stage or "Running")
            else:
                col.label(text=f"Generating in scene '{_scene_name(run)}'", icon="SORTTIME")
            col.operator("animate_anything.cancel", icon="CANCEL")
        else:
            col.operator("animate_anything.generate", icon="RENDER_ANIMATION")
        layout.operator("animate_anything.export_job", icon="EXPORT")
        layout.operator("animate_anything.import_result", icon="IMPORT")
        if not running and mine is not None and job_needs_encoding(str(mine.job_dir)):
            text = "Encode MP4 (the result is PNG frames)"
            layout.operator("animate_anything.encode_video", text=text, icon="FILE_MOVIE")
        reasons = settings.settings_problems(context)
        if reasons:
            draw_reasons(layout, reasons)
        if mine is not None and mine.finished:
            box = layout.box()
            box.label(text=mine.full_message(), icon="INFO")
        draw_farm(layout.box())


def draw_farm(box) -> None:
    """The farm box: submit / cancel, and one row per job of the current submission."""
    box.label(text="Farm", icon="NETWORK_DRIVE")
    run = farm.active_farm()
    if farm.is_submitting():
        box.operator("animate_anything.farm_cancel", icon="CANCEL")
    else:
        box.operator("animate_anything.farm_submit", icon="EXPORT")
    if run is None:
        return
    for label, stage, fraction, message in run.rows():
        row = box.row()
        row.label(text=label)
        if stage in ("done", "failed", "cancelled"):
            row.label(text=message or stage, icon="CHECKMARK" if stage == "done" else "ERROR")
        else:
            row.progress(factor=fraction, text=stage)
    if run.message:
        box.label(text=run.message, icon="INFO")


def _scene_name(run) -> str:
    try:
        return run.scene.name
    except (ReferenceError, AttributeError):
        return "?"


def _make(base, space: str, suffix: str, order: int):
    """A panel class of `base` in the sidebar of `space` ('VIEW_3D' or 'SEQUENCE_EDITOR')."""
    name = f"ANIMATE_ANYTHING_PT_{base.__name__.strip('_').lower()}_{suffix}"
    attrs = {"bl_space_type": space, "bl_idname": name, "bl_order": order}
    return type(name, (base, bpy.types.Panel), attrs)


classes = tuple(
    _make(base, space, suffix, order)
    for space, suffix in (("VIEW_3D", "view3d"), ("SEQUENCE_EDITOR", "sequencer"))
    for order, base in enumerate((_Main, _Drags, _Generation, _Output))
)
