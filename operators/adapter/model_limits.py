"""The chosen guided model's limits as the scene settings see them: the Model Variant per family, the
Size and Frames menus (dynamic EnumProperty items with get/set over width, height and num_frames), and
the check that refuses what the model cannot do. The rules are the core's
(blender_animate/model_limits.py), the same the generator applies to the checkpoint's configs.

Design: the panel loads no model and reads no folder, so it is told the variant by a setting per
family (`cogvideox_variant`, `wan_variant`; defaults: the family's default checkpoint) and offers the
variant's trained sizes (both orientations) and frame counts (whole seconds at its fps), plus Custom
(type width/height or frames: anything the model can do). The generator still reads the real
variant from the checkpoint and refuses what it cannot do before loading.

Enum items: Blender keeps only pointers to the strings of a dynamic items list, so each list is built
once per (menu, family, variant) and kept in `_ITEMS` for the session. Item numbers: 0 = Custom,
i + 1 = the i-th choice (get/set speak these numbers).
"""

from __future__ import annotations

from ...blender_animate import model_limits as ml

CUSTOM = "CUSTOM"
_ITEMS: dict[tuple, list] = {}  # (menu, family, variant) -> the EnumProperty items, kept alive


def family_of(settings) -> str:
    family = getattr(settings, "model_family", "cogvideox")
    return family if family in ml.FAMILIES else "cogvideox"


def variant_of(settings) -> ml.Variant:
    """The Model Variant setting of the chosen family (its default when unset or unknown)."""
    family = family_of(settings)
    name = getattr(settings, f"{family}_variant", "") or ml.DEFAULT_VARIANT[family]
    try:
        return ml.variant(family, name)
    except ValueError:
        return ml.variant(family, ml.DEFAULT_VARIANT[family])


def limits_of(settings) -> ml.ModelLimits:
    """The chosen variant's limits (of its real configs)."""
    v = variant_of(settings)
    return ml.variant_limits(v.family, v.name)


def variant_items(family: str) -> tuple:
    """Static items of a family's Model Variant menu (the default first)."""
    return tuple((v.name, v.label, "Checkpoints: " + ", ".join(v.checkpoints)) for v in ml.VARIANTS[family])


# ------------------------------------------------------------------------------------------------
# Size: (width, height) choices


def _size_choices(settings) -> list[tuple[int, int]]:
    return ml.size_choices(limits_of(settings))


def size_items(settings, _context=None) -> list:
    v = variant_of(settings)
    key = ("size", v.family, v.name)
    if key not in _ITEMS:
        lim = limits_of(settings)
        items = [
            (f"{w}x{h}", f"{w} x {h}", f"{v.label} was trained at {w}x{h}", i + 1)
            for i, (w, h) in enumerate(ml.size_choices(lim))
        ]
        items.append((CUSTOM, "Custom", f"Type width and height: {lim.describe()}", 0))
        _ITEMS[key] = items
    return _ITEMS[key]


def get_size(settings) -> int:
    """The Size item number: the listed size equal to width x height, else 0 (Custom)."""
    if getattr(settings, "custom_size", False):
        return 0
    wh = (settings.width, settings.height)
    choices = _size_choices(settings)
    return choices.index(wh) + 1 if wh in choices else 0


def set_size(settings, value: int) -> None:
    """Picking a size writes width and height; Custom shows them for typing."""
    choices = _size_choices(settings)
    if 1 <= value <= len(choices):
        settings.custom_size = False
        settings.width, settings.height = choices[value - 1]
    else:
        settings.custom_size = True


# ------------------------------------------------------------------------------------------------
# Frames


def frame_items(settings, _context=None) -> list:
    v = variant_of(settings)
    key = ("frames", v.family, v.name)
    if key not in _ITEMS:
        lim = limits_of(settings)
        items = []
        for i, n in enumerate(ml.frame_choices(lim)):
            trained = ", trained" if n == lim.trained_frames else ""
            name = f"{n} ({(n - 1) / lim.fps:g} s at {lim.fps:g} fps{trained})"
            items.append((str(n), name, f"{n} frames of {v.label}", i + 1))
        items.append((CUSTOM, "Custom", f"Type the frame count: {lim.describe()}", 0))
        _ITEMS[key] = items
    return _ITEMS[key]


def get_frames(settings) -> int:
    if getattr(settings, "custom_frames", False):
        return 0
    choices = ml.frame_choices(limits_of(settings))
    return choices.index(settings.num_frames) + 1 if settings.num_frames in choices else 0


def set_frames(settings, value: int) -> None:
    choices = ml.frame_choices(limits_of(settings))
    if 1 <= value <= len(choices):
        settings.custom_frames = False
        settings.num_frames = choices[value - 1]
    else:
        settings.custom_frames = True


# ------------------------------------------------------------------------------------------------
# Checks and notes


def model_problems(settings) -> list[str]:
    """Why the guided settings cannot be exported for the chosen model ([] outside the guided mode):
    a size or frame count it cannot make, Time-to-Move indices outside the step count, Wan-Move
    tracks on another family or variant. (The transformer file is checked in settings.py: it
    touches the disk.)"""
    if getattr(settings, "mode", "") != "guided":
        return []
    v, lim = variant_of(settings), limits_of(settings)
    problems = []
    text = ml.refusal(lim, v.label, settings.width, settings.height, settings.num_frames)
    if text:
        problems.append(text)
    guidance = getattr(settings, "guidance", "ttm")
    if guidance == "ttm":
        try:
            ml.ttm_indices(v.family, settings.steps, settings.tweak_index, settings.tstrong_index)
        except ValueError as exc:
            problems.append(f"{exc}: set Tweak Step and Strong Step to -1 (the defaults) or within Steps")
    if guidance == "tracks" and (v.family, v.name) != ("wan", "2.1-i2v"):
        problems.append(
            "Wan-Move Tracks need Wan-Move weights: set Model Family to Wan 2.x and Model Variant to "
            f"'{ml.variant('wan', '2.1-i2v').label}', or pick another Motion Guidance"
        )
    return problems


def ttm_default_note(settings) -> str:
    """The Time-to-Move steps a run uses, e.g. "Steps used: tweak 3, strong 7 of 50 (defaults)";
    "" when the indices are invalid (a problem says so)."""
    family = family_of(settings)
    try:
        tweak, strong = ml.ttm_indices(family, settings.steps, settings.tweak_index, settings.tstrong_index)
    except ValueError:
        return ""
    default = settings.tweak_index < 0 or settings.tstrong_index < 0
    text = f"Steps used: tweak {tweak}, strong {strong} of {settings.steps}"
    return text + (" (-1 = default)" if default else "")


def model_notes(settings, video_fps: float) -> list[str]:
    """Lines the panel shows under Size and Frames in the guided mode: the model's fps, and what it
    can make but was not trained at (the generator's own warnings). Never problems."""
    if getattr(settings, "mode", "") != "guided":
        return []
    v, lim = variant_of(settings), limits_of(settings)
    notes = [f"{v.label}: {lim.trained_frames} frames at {lim.fps:g} fps"]
    try:
        notes += lim.check(settings.height, settings.width, settings.num_frames)
    except ValueError:
        pass  # a problem says so
    if abs(video_fps - lim.fps) > 0.01:
        notes.append(
            f"the video plays at {video_fps:g} fps, the model moves at {lim.fps:g}: set FPS to {lim.fps:g}"
        )
    return notes
