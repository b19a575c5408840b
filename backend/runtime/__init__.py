"""The model runtime that modes guided and animateanything share as peers (no model classes).

- checkpoints.py: local folder or hub id, offline by default, safetensors-only completeness checks,
  parameter counts from safetensors headers (stdlib only: the doctor uses it without torch).
- text.py: the T5 tokenizer and text encoder (sentencepiece checks), prompt encoding.
- prompts.py: the prompt-embedding cache.
- devices.py: the device, its free memory, the dtype.
- memory.py: the pure memory planner (ModelSpec -> MemoryPlan).
- placement.py: a pipeline placed on its device as a MemoryPlan says (offload, VAE tiling/slicing).
- real_configs.py + configs/*.json: the real CogVideoX / T5 configs as data.
Nothing heavy is imported here: torch loads only inside the functions that need it.
"""
