"""Animate Anything: a still image into a video under camera and drag control.

Blender loads this file as the extension's module. It only registers; every bpy-facing module is
imported inside register() so that the core (blender_animate/) and the generator (backend/) can be
imported and tested without Blender.
"""

import importlib

# Modules holding classes or handlers, in registration order: the adapter's handlers, then settings
# before the panels and operators using them. Each may expose `classes` (registered in order) and
# register()/unregister() hooks. The adapter's readers and writers (operators.adapter.scene_camera,
# ...) are imported by the modules that use them.
_MODULE_NAMES = (
    "operators.adapter.settings",
    "operators.adapter.runs",
    "operators.adapter.checks",
    "operators.adapter.environments",
    "operators.adapter.farm",
    "operators.adapter.overlay_draw",
    "panels.props",
    "panels.preferences",
    "panels.sidebar",
    "operators.export_job",
    "operators.import_result",
    "operators.encode_video",
    "operators.generate",
    "operators.cancel",
    "operators.create_environment",
    "operators.check_generator",
    "operators.farm_submit",
    "operators.farm_cancel",
)

_loaded = []


def register():
    import bpy

    _loaded[:] = [importlib.import_module(f".{name}", __package__) for name in _MODULE_NAMES]
    for module in _loaded:
        for cls in getattr(module, "classes", ()):
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister():
    import bpy

    for module in reversed(_loaded):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(getattr(module, "classes", ())):
            bpy.utils.unregister_class(cls)
    _loaded.clear()
