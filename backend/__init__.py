"""The generator process: `python -m backend run JOB` turns a job directory into a video.

It never imports bpy. It imports the core as the top-level package `blender_animate` (the process
runs with the extension root on PYTHONPATH). The preview path needs numpy and Pillow only; torch,
diffusers, OpenCV, scipy and PyAV are imported only where a mode or an output needs them.
"""
