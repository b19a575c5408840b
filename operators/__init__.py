"""Blender operators and the bpy-side readers and writers (camera, strokes, reference render,
job export, result import, the generator process). Registered by the root __init__.py."""
