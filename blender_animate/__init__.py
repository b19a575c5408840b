"""The Blender-free core shared by Blender and the generator: camera, Plücker, track and flow math,
the whole job contract (job.py: job.json + conditions.npz; result.py: out/ and result.json) and, in
addon/, the add-on's runtime (child processes, run state, check summaries).

stdlib + numpy only: no bpy, no torch; relative imports only."""
