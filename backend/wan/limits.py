"""What a Wan 2.x image-to-video checkpoint can generate, read from its configs (no torch).

Variants, told apart by their configs (model_index.json, transformer/config.json):
- "2.1-i2v" (Wan2.1-I2V-14B-480P / -720P, and Wan-Move-14B-480P, a full fine-tune of the 480P
  model): the transformer has `image_dim` (CLIP image tokens); trained at 480x832 (480P) or
  720x1280 (720P), 81 frames at 16 fps.
- "2.2-i2v-a14b" (Wan2.2-I2V-A14B): two experts (`transformer` for high noise, `transformer_2`
  below `boundary_ratio` x 1000), no CLIP; 480P and 720P, 81 frames at 16 fps.
- "2.2-ti2v-5b" (Wan2.2-TI2V-5B): `expand_timesteps` (frame 0 is the image latent itself), the
  Wan 2.2 VAE with 16x16 spatial compression; trained at 704x1280, 121 frames at 24 fps.
Can do: sides multiples of VAE spatial factor x patch size (16, or 32 for TI2V-5B), 4N+1 frames
(the causal VAE), latent grid within the RoPE table (`rope_max_seq_len`). Other trained-size,
frame-count or fps mismatches are warnings.

The rules live in the core (blender_animate/model_limits.py), shared with the add-on's panel; this
module keeps the generator's names.
"""

from __future__ import annotations

from blender_animate.model_limits import TRAINED as TRAINED
from blender_animate.model_limits import WanLimits as WanLimits
from blender_animate.model_limits import wan_checkpoint_limits as checkpoint_limits
from blender_animate.model_limits import wan_variant as wan_variant

__all__ = ["TRAINED", "WanLimits", "checkpoint_limits", "wan_variant"]
