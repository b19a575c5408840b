"""Blender operators, one thin operator per file (they gather settings, call the adapter, report),
and in adapter/ the bpy adapter every read and write of Blender data goes through. Registered by
the root __init__.py."""
