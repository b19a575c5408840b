"""Blender operators and the bpy-side readers and writers. One module per operator family; each
module exposes `classes` (registered in order) and may define register()/unregister() hooks."""

import importlib

# Modules that hold operator classes, in registration order. Readers without classes
# (scene_camera, scene_strokes, ...) are imported by the operators that use them.
_MODULE_NAMES = ("export_job", "import_result", "encode_video", "generate", "environment", "check_generator")

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
