"""Tiny random Wan 2.x image-to-video checkpoints, built once per session and saved in diffusers layout
(safetensors), loaded by the tests through backend/wan/load.py.

Sizes follow diffusers' own Wan I2V tests:
- transformer: 2 heads x 12 dims (RoPE splits head_dim into t/h/w parts, so it must be divisible by 6
  and the parts even), 1 layer, ffn 32, text_dim 32 = tests/tiny_text.py's T5 d_model; `in_channels`
  = noise (z_dim) + image condition (4 mask channels + z_dim) for Wan 2.1/2.2 I2V, = z_dim for TI2V.
- VAE (AutoencoderKLWan): base_dim 3, z_dim 16 (I2V) with 8x spatial / 4x temporal compression;
  TI2V: the Wan 2.2 layout (is_residual, patch_size 2 -> 16x spatial), z_dim 12 (a multiple of
  the 12 patchified input channels' factors, as AvgDown3D needs).
- CLIP image encoder (2.1 only): hidden 4 = the transformer's image_dim, 32x32 images, patch 1.
- A14B: two transformers (different seeds), boundary_ratio 0.9; TI2V: expand_timesteps.
- Scheduler: UniPCMultistepScheduler with flow sigmas, shift 3 (Wan's own config).
Videos: 32x32 pixels (I2V; 64x64 for TI2V), 9 frames (3 latent frames).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

H = W = 32
F = 9


def tiny_transformer(variant: str, seed: int = 0):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    z = 12 if variant == "ti2v" else 16
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=z if variant == "ti2v" else 2 * z + 4,
        out_channels=z,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4 if variant == "2.1" else None,
        added_kv_proj_dim=None,
    )


def build_wan_checkpoint(path, variant: str = "2.1", seed: int = 0):
    """Save a tiny Wan checkpoint: variant "2.1" (CLIP), "a14b" (two experts) or "ti2v"; returns path."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from backend.wan.pipeline import GuidedWanPipeline
    from tests.tiny_text import tiny_text_encoder, tiny_tokenizer

    torch.manual_seed(seed)
    if variant == "ti2v":
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=12,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            latents_mean=[0.0] * 12,
            latents_std=[1.0] * 12,
        )
    else:
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    image_encoder = image_processor = None
    if variant == "2.1":
        image_encoder = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=4,
                projection_dim=4,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                intermediate_size=16,
                patch_size=1,
            )
        )
        image_processor = CLIPImageProcessor(crop_size=32, size=32)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    pipe = GuidedWanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(),
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=tiny_transformer(variant, seed),
        transformer_2=tiny_transformer(variant, seed + 1) if variant == "a14b" else None,
        boundary_ratio=0.9 if variant == "a14b" else None,
        expand_timesteps=variant == "ti2v",
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def wan21_ckpt(tmp_path_factory):
    return build_wan_checkpoint(tmp_path_factory.mktemp("wan-tiny-2.1"), "2.1")


@pytest.fixture(scope="session")
def wan_a14b_ckpt(tmp_path_factory):
    return build_wan_checkpoint(tmp_path_factory.mktemp("wan-tiny-a14b"), "a14b", seed=2)


@pytest.fixture(scope="session")
def wan_ti2v_ckpt(tmp_path_factory):
    return build_wan_checkpoint(tmp_path_factory.mktemp("wan-tiny-ti2v"), "ti2v", seed=4)


def load(path, **kw):
    from backend.runtime.checkpoints import Checkpoint
    from backend.wan.load import load_pipeline

    pipe = load_pipeline(Checkpoint(str(path), path), dtype="fp32", with_text_encoder=True, **kw)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def wan21_pipe(wan21_ckpt):
    return load(wan21_ckpt)


def reference_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def shifted_video(image: np.ndarray, num_frames: int, dx: int = 1) -> np.ndarray:
    return np.stack([np.roll(image, dx * f, axis=1) for f in range(num_frames)])
