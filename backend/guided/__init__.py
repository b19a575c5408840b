"""Mode `guided`'s machinery: a training-free CogVideoX image-to-video pipeline steered by the
preview video (SDEdit layout prior) and flow-warped noise.

- pipeline.py: `GuidedCogVideoXPipeline` (a diffusers pipeline; imports torch and diffusers).
- limits.py: what sizes and frame counts a checkpoint can do, from its configs (no torch).
- loading.py: local folder or hub id, safetensors only, offline by default, prompt-embedding cache.
- memory.py: dtype / offload / VAE tiling plan from the free GPU memory; `doctor_report()`.
The mode itself is backend/modes/guided.py.
"""
