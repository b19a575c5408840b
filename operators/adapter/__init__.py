"""The bpy adapter: every read and write of Blender data (scene, camera, strokes, reference render,
job export, result import, encoding), Blender-version differences (compat), preferences access, UI
helpers and the runs and checks the add-on follows. Operators and panels both use it; it imports
neither."""
