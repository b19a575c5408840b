"""Blender UI: scene settings, sidebar panels and add-on preferences. Registered by the root
__init__.py; panels draw properties and name operators by idname, they compute nothing (cached
answers come from operators/adapter/)."""
