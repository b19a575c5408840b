"""Memory-plan inputs for the Wan 2.x families, from their real configs (backend/runtime/configs/).

`wan_model_spec(variant, height, width, num_frames, ...)` is a `memory.ModelSpec` for
"2.1-i2v" (Wan2.1-I2V-14B-480P/720P, Wan-Move-14B-480P), "2.2-i2v-a14b" (two experts) and
"2.2-ti2v-5b". Parameter counts: counted on the meta device from the real configs
(`real_configs.wan_parameter_counts()`, checked by tests/wan/test_memory.py), stored here so the
planner needs no torch. Stdlib only.
"""

from __future__ import annotations

from . import real_configs
from .memory import ModelSpec

# Parameters + persistent buffers of the real configs (meta device).
WAN_PARAMS = {
    "transformer_2.1-i2v": 16_394_878_784,
    "transformer_2.2-i2v-a14b": 14_288_901_184,  # each expert
    "transformer_2.2-ti2v-5b": 4_999_787_712,
    "vae_2.1": 126_892_531,
    "vae_2.2": 704_688_668,
    "text_encoder": 6_731_059_200,  # UMT5-XXL encoder incl. its 256k-token embedding
    "image_encoder": 630_766_080,  # CLIP ViT-H/14 vision tower
}
WAN_TEXT_TOKENS = 512
# Each family's default job format (the size it was trained at).
WAN_DEFAULT_FORMAT = {
    "2.1-i2v": (480, 832, 81),
    "2.2-i2v-a14b": (480, 832, 81),
    "2.2-ti2v-5b": (704, 1280, 121),
}


def wan_model_spec(
    variant: str,
    height: int,
    width: int,
    num_frames: int,
    *,
    guidance: bool = True,
    encode_prior: bool = True,
    text_encoder_needed: bool = True,
    transformer_config: dict | None = None,
    transformer_params: int | None = None,
) -> ModelSpec:
    """A ModelSpec for a Wan variant at a size; `transformer_config` / `transformer_params` override
    the real ones (a loaded checkpoint's own config.json and safetensors count)."""
    cfg = transformer_config or real_configs.wan_transformer(variant)
    vae = real_configs.wan_vae(variant)
    ti2v = variant == "2.2-ti2v-5b"
    return ModelSpec(
        transformer_params=transformer_params or WAN_PARAMS[f"transformer_{variant}"],
        vae_params=WAN_PARAMS["vae_2.2" if ti2v else "vae_2.1"],
        text_encoder_params=WAN_PARAMS["text_encoder"],
        num_layers=int(cfg["num_layers"]),
        hidden=int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"]),
        patch_size=int(cfg["patch_size"][1]),
        patch_size_t=None,
        text_tokens=WAN_TEXT_TOKENS,
        height=height,
        width=width,
        num_frames=num_frames,
        guidance=guidance,
        encode_prior=encode_prior,
        text_encoder_needed=text_encoder_needed,
        family="wan",
        latent_channels=int(vae["z_dim"]),
        spatial=int(vae.get("scale_factor_spatial", 8)),
        experts=2 if variant == "2.2-i2v-a14b" else 1,
        image_encoder_params=WAN_PARAMS["image_encoder"] if cfg.get("image_dim") else 0,
        vae_kind="wan2.2" if ti2v else "wan2.1",
        vae_channels=int(vae["base_dim"]),
    )
