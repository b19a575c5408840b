"""Where the add-on's preferences are and what they say about the generator's Python.

The preferences class itself (what the user edits) is panels/preferences.py; this module only
finds and reads it, so that operators need not import the UI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy

from ...blender_animate.addon.client import extension_site_packages

# The extension's package, e.g. "bl_ext.user_default.animate_anything" (this module is its
# .operators.adapter.preferences): the add-on's key in context.preferences.addons and the bl_idname
# of its preferences.
ADDON_PACKAGE = __package__.rsplit(".", 2)[0]
MODEL_SETTINGS = (
    ("cogvideox_model", "CogVideoX Model"),
    ("animateanything_model", "AnimateAnything Weights"),
    ("segment_model", "SAM 2 Model"),
    ("depth_model", "Depth Model"),
)


def get_preferences(context=None):
    """This add-on's preferences, or None when it is not enabled under its package name."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return getattr(addon, "preferences", None)


def generator_python(context=None) -> str:
    """The interpreter that runs the generator: the preferences' python_path, else Blender's own."""
    path = getattr(get_preferences(context), "python_path", "")
    return bpy.path.abspath(path) if path.strip() else sys.executable


def keep_generator_ready(context=None) -> bool:
    """Whether runs leave a standby generator ready for the next (blender_animate.addon.standby)."""
    return bool(getattr(get_preferences(context), "keep_generator_ready", True))


def is_blenders_python(python: str) -> bool:
    """Whether `python` is the interpreter Blender runs (the one that needs nothing installed)."""
    return Path(python).resolve() == Path(sys.executable).resolve()


def generator_paths(python: str) -> list[str]:
    """Extra PYTHONPATH entries: the bundled wheels, only for Blender's own Python (a different
    interpreter may be another Python version, which the bundled wheels would break)."""
    return extension_site_packages(sys.path) if is_blenders_python(python) else []


def model_settings(context=None) -> dict:
    """{label: value} of the model locations set in the preferences (paths made absolute)."""
    prefs = get_preferences(context)
    out = {}
    for attr, label in MODEL_SETTINGS:
        value = getattr(prefs, attr, "").strip()
        if value:
            out[label] = bpy.path.abspath(value) if value.startswith("//") else value
    return out
