"""Blender UI: scene settings, sidebar panels and add-on preferences. Registered by the root
__init__.py; panels draw properties and call operators, they compute nothing."""
