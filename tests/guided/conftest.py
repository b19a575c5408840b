"""Tiny random CogVideoX I2V checkpoints, built once per session and saved in diffusers layout.

Sizes are the AnimateAnything tests' tiny ones (backend/animateanything/configs.py, each constraint
commented there; they follow diffusers' own CogVideoX I2V tests), with a one-layer transformer:
- 1.0 style: learned positional embeddings fixed to sample_height/width = 2 latents (16x16 pixels)
  and sample_frames = 9 (3 latent frames); in_channels = 2 x latent_channels (noise + image).
- 1.5 style: patch_size_t = 2, ofs embedding, no learned positional embeddings, a RoPE grid of 32
  latents (up to 256x256 pixels); its VAE has invert_scale_latents.
- Text: tests/tiny_text.py (T5 with d_model 32 = text_embed_dim, an offline WordLevel tokenizer);
  max_text_seq_length 16 tokens.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests that need torch skip themselves (pytest.importorskip); the bpy-free environment builder and
# the pure memory-plan tests run without it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_checkpoint(path, version: str = "1.0", seed: int = 0, max_text_seq_length: int = 16):
    """Save a tiny random CogVideoX I2V checkpoint (safetensors) to `path`; returns `path`.
    `max_text_seq_length` 226 makes a checkpoint that takes the real checkpoints' prompt length."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    from backend.animateanything import configs
    from backend.guided.pipeline import GuidedCogVideoXPipeline
    from tests.tiny_text import tiny_text_encoder, tiny_tokenizer

    torch.manual_seed(seed)
    one_layer = dict(
        configs.TINY_COGVIDEOX_TRANSFORMER, num_layers=1, max_text_seq_length=max_text_seq_length
    )
    if version == "1.0":
        transformer = CogVideoXTransformer3DModel(**dict(one_layer, sample_width=2, sample_height=2))
    else:
        transformer = CogVideoXTransformer3DModel(
            **dict(
                one_layer,
                time_embed_dim=4,
                sample_width=32,
                sample_height=32,
                sample_frames=17,
                patch_size_t=2,
                patch_bias=False,
                ofs_embed_dim=4,
                use_learned_positional_embeddings=False,
            )
        )
    vae = AutoencoderKLCogVideoX(**configs.TINY_COGVIDEOX_VAE, invert_scale_latents=version != "1.0")
    scheduler = CogVideoXDDIMScheduler(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=1.0,
    )
    pipe = GuidedCogVideoXPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_text_encoder(),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A 1.0-style tiny checkpoint folder (16x16 pixels, 9 frames)."""
    return build_checkpoint(tmp_path_factory.mktemp("cogvideox-tiny-1.0"), "1.0")


@pytest.fixture(scope="session")
def tiny_ckpt_15(tmp_path_factory):
    """A 1.5-style tiny checkpoint folder (multiples of 16 up to 256 pixels, 16N+1 frames)."""
    return build_checkpoint(tmp_path_factory.mktemp("cogvideox-tiny-1.5"), "1.5", seed=1)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_ckpt):
    """The 1.0 tiny checkpoint loaded through the real loading code, with its text encoder."""
    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import Checkpoint

    pipe = load_pipeline(Checkpoint(str(tiny_ckpt), tiny_ckpt), dtype="fp32", with_text_encoder=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def shifted_video(image: np.ndarray, num_frames: int, dx: int = 1) -> np.ndarray:
    """A layout prior: the image rolled dx pixels right per frame, (F, H, W, 3) uint8."""
    return np.stack([np.roll(image, dx * f, axis=1) for f in range(num_frames)])
