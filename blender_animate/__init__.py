"""The core: camera, Plücker, track and flow math shared by Blender and the generator.

stdlib + numpy only: no bpy, no torch; relative imports only."""
