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
"""

from __future__ import annotations

from dataclasses import dataclass

TRAINED = {
    "2.1-i2v": {"sizes": ((480, 832), (720, 1280)), "frames": 81, "fps": 16.0},
    "2.2-i2v-a14b": {"sizes": ((480, 832), (720, 1280)), "frames": 81, "fps": 16.0},
    "2.2-ti2v-5b": {"sizes": ((704, 1280),), "frames": 121, "fps": 24.0},
}


def wan_variant(transformer_config: dict, model_index: dict | None = None) -> str:
    """'2.1-i2v', '2.2-i2v-a14b' or '2.2-ti2v-5b' from the configs."""
    model_index = model_index or {}
    if model_index.get("expand_timesteps") or transformer_config.get("in_channels") == transformer_config.get(
        "out_channels"
    ):
        return "2.2-ti2v-5b"
    if model_index.get("boundary_ratio") is not None or model_index.get("transformer_2", [None])[0]:
        return "2.2-i2v-a14b"
    return "2.1-i2v"


@dataclass
class WanLimits:
    """Sizes and frame counts a Wan checkpoint can do: sides multiples of `multiple` up to
    `max_side`, `frame_step` N + 1 frames up to `max_frames`; `trained` what it was trained at."""

    variant: str
    multiple: int
    max_side: int
    frame_step: int
    max_frames: int

    @property
    def trained(self) -> dict:
        return TRAINED[self.variant]

    def valid_sizes(self) -> list[tuple[int, int]]:
        """(height, width) sizes it was trained at, both orientations."""
        sizes = []
        for h, w in self.trained["sizes"]:
            sizes += [(h, w), (w, h)]
        return sizes

    def describe(self) -> str:
        t = self.trained
        sizes = ", ".join(f"{w}x{h}" for h, w in t["sizes"])
        return (
            f"Wan {self.variant}: width and height multiples of {self.multiple} up to {self.max_side}, "
            f"{self.frame_step}N+1 frames up to {self.max_frames}; trained at {sizes} (either orientation), "
            f"{t['frames']} frames at {t['fps']:g} fps"
        )

    def check(self, height: int, width: int, num_frames: int, fps: float | None = None) -> list[str]:
        """ValueError for what it cannot do; warnings for what it was not trained at."""
        what = f"{width}x{height} pixels, {num_frames} frames"
        if height % self.multiple or width % self.multiple or max(height, width) > self.max_side:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        if (num_frames - 1) % self.frame_step or not 1 < num_frames <= self.max_frames:
            raise ValueError(f"this checkpoint cannot generate {what}; it can do {self.describe()}")
        t, warnings = self.trained, []
        if (height, width) not in self.valid_sizes():
            warnings.append(
                f"{width}x{height} is not a size Wan {self.variant} was trained at: expect weaker results"
            )
        if num_frames != t["frames"]:
            warnings.append(f"Wan {self.variant} was trained at {t['frames']} frames, not {num_frames}")
        if fps is not None and abs(float(fps) - t["fps"]) > 0.01:
            warnings.append(
                f"Wan {self.variant} makes {t['fps']:g} fps motion; the job plays it at {fps:g} fps"
            )
        return warnings


def checkpoint_limits(
    transformer_config: dict, vae_config: dict, model_index: dict | None = None
) -> WanLimits:
    """Limits from transformer/config.json, vae/config.json and model_index.json (dicts)."""
    variant = wan_variant(transformer_config, model_index)
    patch = transformer_config.get("patch_size", [1, 2, 2])
    spatial = int(vae_config.get("scale_factor_spatial", 8))
    temporal = int(vae_config.get("scale_factor_temporal", 4))
    rope = int(transformer_config.get("rope_max_seq_len", 1024))
    multiple = spatial * int(patch[1])
    return WanLimits(
        variant=variant,
        multiple=multiple,
        max_side=min(rope * multiple, 4096),
        frame_step=temporal,
        max_frames=min(temporal * (rope * int(patch[0]) - 1) + 1, 1024 // temporal * temporal + 1),
    )
