"""What sizes and frame counts a CogVideoX checkpoint can generate, read from its configs.

Torch-free, so a job can be refused before any weights are loaded.
- 1.0 (CogVideoX-5b-I2V): learned positional embeddings fix the size to sample_height/width x 8
  (720x480) and the frames to sample_frames (49; other counts silently drop the learned embeddings).
- 1.5 (CogVideoX1.5-5B-I2V, `patch_size_t` set): sides multiples of 8 x patch_size (16) up to the
  RoPE grid sample_height/width x 8 (2400 for 300), 16N+1 frames up to 161; trained at min side 768,
  max side <= 1360 (other sizes work with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

# CogVideoX 1.5 model card: trained at min(W, H) = 768, max(W, H) <= 1360, 16N+1 frames (81 or 161).
V15_TRAINED_MIN_SIDE = 768
V15_TRAINED_MAX_SIDE = 1360
V15_MAX_FRAMES = 161


@dataclass
class CheckpointLimits:
    """What sizes and frame counts a checkpoint can generate, read from its configs.

    version "1.0": `fixed_size` (height, width) and `fixed_frames` are set (learned positional
    embeddings). version "1.5": sides are multiples of `multiple` up to `max_size` (the RoPE grid),
    frames are `frame_step` * N + 1 up to `max_frames`."""

    version: str
    fixed_size: tuple[int, int] | None = None
    fixed_frames: int | None = None
    multiple: int = 16
    max_size: tuple[int, int] | None = None
    frame_step: int = 8
    max_frames: int | None = None

    def describe(self) -> str:
        if self.fixed_size is not None:
            h, w = self.fixed_size
            return f"CogVideoX {self.version}: exactly {w}x{h} pixels and {self.fixed_frames} frames"
        mh, mw = self.max_size
        return (
            f"CogVideoX {self.version}: width and height multiples of {self.multiple} up to {mw}x{mh} "
            f"pixels (trained at min side {V15_TRAINED_MIN_SIDE}, max side <= {V15_TRAINED_MAX_SIDE}), "
            f"{self.frame_step}N+1 frames up to {self.max_frames} (e.g. 81)"
        )

    def check(self, height: int, width: int, num_frames: int) -> list[str]:
        """Raise ValueError for a size or frame count the checkpoint cannot do; return warnings for
        sizes it can do but was not trained at."""
        what = f"{width}x{height} pixels, {num_frames} frames"
        if self.fixed_size is not None:
            if (height, width) != self.fixed_size or num_frames != self.fixed_frames:
                raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
            return []
        mh, mw = self.max_size
        if height % self.multiple or width % self.multiple or height > mh or width > mw:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        if (num_frames - 1) % self.frame_step or not self.frame_step < num_frames <= self.max_frames:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        warnings = []
        if min(height, width) < V15_TRAINED_MIN_SIDE or max(height, width) > V15_TRAINED_MAX_SIDE:
            warnings.append(
                f"{width}x{height} is outside the size CogVideoX 1.5 was trained at (min side "
                f"{V15_TRAINED_MIN_SIDE}, max side <= {V15_TRAINED_MAX_SIDE}): expect weaker results"
            )
        return warnings


def checkpoint_limits(transformer_config: dict, vae_config: dict) -> CheckpointLimits:
    """Read a checkpoint's size and frame limits from its transformer and VAE configs (dicts as in
    their config.json), without loading any weights."""
    spatial = 2 ** (len(vae_config.get("block_out_channels", (128, 256, 256, 512))) - 1)
    patch = int(transformer_config.get("patch_size", 2))
    sample_h = int(transformer_config.get("sample_height", 60)) * spatial
    sample_w = int(transformer_config.get("sample_width", 90)) * spatial
    sample_frames = int(transformer_config.get("sample_frames", 49))
    if transformer_config.get("patch_size_t") is None:
        if transformer_config.get("use_learned_positional_embeddings", True):
            return CheckpointLimits("1.0", fixed_size=(sample_h, sample_w), fixed_frames=sample_frames)
        # 1.0 without learned embeddings (RoPE only): flexible up to the sample size.
        return CheckpointLimits(
            "1.0",
            multiple=spatial * patch,
            max_size=(sample_h, sample_w),
            frame_step=8,
            max_frames=sample_frames,
        )
    return CheckpointLimits(
        "1.5",
        multiple=spatial * patch,
        max_size=(sample_h, sample_w),
        frame_step=16,
        max_frames=V15_MAX_FRAMES,
    )
