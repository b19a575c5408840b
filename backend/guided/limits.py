"""What sizes and frame counts a CogVideoX checkpoint can generate, read from its configs.

Torch-free, so a job can be refused before any weights are loaded.
- 1.0 (CogVideoX-5b-I2V): learned positional embeddings fix the size to sample_height/width x 8
  (720x480) and the frames to sample_frames (49; other counts silently drop the learned embeddings).
- 1.5 (CogVideoX1.5-5B-I2V, `patch_size_t` set): sides multiples of 8 x patch_size (16) up to the
  RoPE grid sample_height/width x 8 (2400 for 300), 16N+1 frames up to 161; trained at min side 768,
  max side <= 1360 (other sizes work with a warning).

The rules live in the core (blender_animate/model_limits.py), shared with the add-on's panel; this
module keeps the generator's names.
"""

from __future__ import annotations

from blender_animate.model_limits import V15_MAX_FRAMES as V15_MAX_FRAMES
from blender_animate.model_limits import V15_TRAINED_MAX_SIDE as V15_TRAINED_MAX_SIDE
from blender_animate.model_limits import V15_TRAINED_MIN_SIDE as V15_TRAINED_MIN_SIDE
from blender_animate.model_limits import CheckpointLimits as CheckpointLimits
from blender_animate.model_limits import cogvideox_checkpoint_limits as checkpoint_limits

__all__ = [
    "V15_MAX_FRAMES",
    "V15_TRAINED_MAX_SIDE",
    "V15_TRAINED_MIN_SIDE",
    "CheckpointLimits",
    "checkpoint_limits",
]
