"""Animate Anything: a still image into a video under camera and drag control.

Blender loads this file as the extension's module. It only registers; every bpy-facing module is
imported inside register() so that the core (blender_animate/) and the generator (backend/) can be
imported and tested without Blender.
"""

_modules = []


def register():
    from . import operators, panels

    _modules[:] = [panels, operators]
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
    _modules.clear()
