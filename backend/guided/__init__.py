"""Mode `guided`'s CogVideoX-specific parts: a training-free I2V pipeline steered by the preview.

- pipeline.py: `GuidedCogVideoXPipeline` (a diffusers pipeline; SDEdit layout prior and flow-warped
  noise; imports torch and diffusers).
- limits.py: what sizes and frame counts a checkpoint can do, from its configs (no torch).
- load.py: `load_pipeline`, a checkpoint into a GuidedCogVideoXPipeline on the CPU.
Checkpoints, prompt embeddings, the memory plan and placement are backend/runtime/; the mode itself
is backend/modes/guided.py.
"""
