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
