"""The real configs of the public checkpoints, stored as data in backend/runtime/configs/*.json
(THUDM/CogVideoX-5b-I2V and CogVideoX1.5-5B-I2V transformers, their VAE, the T5-XXL encoder:
the keyword arguments of the diffusers/transformers model classes), and their parameter counts
built on the meta device. Reading a config needs only the standard library."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def real_config(name: str) -> dict:
    """A fresh dict of configs/<name>.json."""
    return json.loads((CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))


def cogvideox_5b_i2v_transformer() -> dict:
    """THUDM/CogVideoX-5b-I2V transformer/config.json (CogVideoXTransformer3DModel keywords)."""
    return real_config("cogvideox_5b_i2v_transformer")


def cogvideox_15_5b_i2v_transformer() -> dict:
    """THUDM/CogVideoX1.5-5B-I2V transformer/config.json."""
    return real_config("cogvideox_1.5_5b_i2v_transformer")


def cogvideox_vae() -> dict:
    """The CogVideoX VAE config (AutoencoderKLCogVideoX keywords)."""
    return real_config("cogvideox_vae")


def t5_v1_1_xxl_encoder() -> dict:
    """The T5-v1.1-XXL encoder config (transformers.T5Config keywords)."""
    return real_config("t5_v1_1_xxl_encoder")


def real_parameter_counts(include_text_encoder: bool = True) -> dict:
    """Parameter + persistent buffer counts of the real configs, built on the meta device
    (no memory, no weights): {"transformer_1.0", "transformer_1.5", "vae", "text_encoder"}."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    def total(model) -> int:
        params = sum(p.numel() for p in model.parameters())
        return params + sum(b.numel() for _, b in model.named_buffers() if _persistent(model, _))

    with init_empty_weights():
        counts = {
            "transformer_1.0": total(CogVideoXTransformer3DModel(**cogvideox_5b_i2v_transformer())),
            "transformer_1.5": total(CogVideoXTransformer3DModel(**cogvideox_15_5b_i2v_transformer())),
            "vae": total(AutoencoderKLCogVideoX(**cogvideox_vae())),
        }
        if include_text_encoder:
            from transformers import T5Config, T5EncoderModel

            counts["text_encoder"] = total(T5EncoderModel(T5Config(**t5_v1_1_xxl_encoder())))
    return counts


def _persistent(model, name: str) -> bool:
    module_name, _, buffer_name = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return buffer_name not in getattr(module, "_non_persistent_buffers_set", set())


# Wan 2.x (Wan-AI/*-Diffusers transformer/ and vae/ config.json; the VAE JSONs hold the architecture
# keys, not latents_mean/std, which do not change any size).
WAN_TRANSFORMERS = {
    "2.1-i2v": "wan_2.1_i2v_14b_transformer",  # Wan2.1-I2V-14B-480P/720P, Wan-Move-14B-480P
    "2.2-i2v-a14b": "wan_2.2_i2v_a14b_transformer",  # each of the two experts
    "2.2-ti2v-5b": "wan_2.2_ti2v_5b_transformer",
}
WAN_VAES = {"2.1-i2v": "wan_2.1_vae", "2.2-i2v-a14b": "wan_2.1_vae", "2.2-ti2v-5b": "wan_2.2_vae"}


def wan_transformer(variant: str) -> dict:
    """The WanTransformer3DModel keywords of a Wan variant ("2.1-i2v", "2.2-i2v-a14b", "2.2-ti2v-5b")."""
    return real_config(WAN_TRANSFORMERS[variant])


def wan_vae(variant: str) -> dict:
    """The AutoencoderKLWan keywords of a Wan variant's VAE (2.1's for the 14B models, 2.2's for TI2V)."""
    return real_config(WAN_VAES[variant])


def umt5_xxl_encoder() -> dict:
    """google/umt5-xxl's encoder config (transformers.UMT5Config keywords), Wan's text encoder."""
    return real_config("umt5_xxl_encoder")


def clip_vit_h_14_vision() -> dict:
    """The CLIP ViT-H/14 vision tower of Wan 2.1 I2V (transformers.CLIPVisionConfig keywords)."""
    return real_config("clip_vit_h_14_vision")


def wan_parameter_counts() -> dict:
    """Parameter counts of the Wan configs on the meta device: {"transformer_<variant>",
    "vae_2.1", "vae_2.2", "text_encoder", "image_encoder"}."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    def total(model) -> int:
        params = sum(p.numel() for p in model.parameters())
        return params + sum(b.numel() for _, b in model.named_buffers() if _persistent(model, _))

    with init_empty_weights():
        counts = {
            f"transformer_{v}": total(WanTransformer3DModel(**wan_transformer(v))) for v in WAN_TRANSFORMERS
        }
        counts["vae_2.1"] = total(AutoencoderKLWan(**wan_vae("2.1-i2v")))
        counts["vae_2.2"] = total(AutoencoderKLWan(**wan_vae("2.2-ti2v-5b")))
        counts["text_encoder"] = total(UMT5EncoderModel(UMT5Config(**umt5_xxl_encoder())))
        counts["image_encoder"] = total(CLIPVisionModel(CLIPVisionConfig(**clip_vit_h_14_vision())))
    return counts
