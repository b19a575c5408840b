"""Tiny random CogVideoX I2V checkpoints, built once per session and saved in diffusers layout.

Sizes follow diffusers' own CogVideoX I2V tests: the VAE has 4 blocks (8x spatial, 4x temporal
compression) with 8 channels; the transformer has 1 layer of 2 heads x 16 dims.
- 1.0 style: learned positional embeddings fixed to sample_height/width = 2 latents (16x16 pixels)
  and sample_frames = 9 (3 latent frames); in_channels = 2 x latent_channels (noise + image).
- 1.5 style: patch_size_t = 2, ofs embedding, no learned positional embeddings, a RoPE grid of 32
  latents (up to 256x256 pixels); its VAE has invert_scale_latents.
- T5: d_model 32 = the transformer's text_embed_dim; max_text_seq_length 16 tokens.
- The tokenizer is a WordLevel vocabulary built offline with `tokenizers`.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

# Tests that need torch skip themselves (pytest.importorskip); the bpy-free environment builder and
# the pure memory-plan tests run without it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = "a the cat dog runs walks on moon red blue camera moves left right slowly fast".split()
TEXT_LEN = 16


def build_checkpoint(path, version: str = "1.0", seed: int = 0):
    """Save a tiny random CogVideoX I2V checkpoint (safetensors) to `path`; returns `path`."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    from backend.guided.pipeline import GuidedCogVideoXPipeline

    torch.manual_seed(seed)
    common = dict(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,  # 4 noise + 4 image latent channels
        out_channels=4,
        text_embed_dim=32,  # = T5 d_model
        num_layers=1,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=TEXT_LEN,
        use_rotary_positional_embeddings=True,
    )
    if version == "1.0":
        transformer = CogVideoXTransformer3DModel(
            time_embed_dim=2,
            sample_width=2,
            sample_height=2,
            sample_frames=9,
            use_learned_positional_embeddings=True,
            **common,
        )
    else:
        transformer = CogVideoXTransformer3DModel(
            time_embed_dim=4,
            sample_width=32,
            sample_height=32,
            sample_frames=17,
            patch_size_t=2,
            patch_bias=False,
            ofs_embed_dim=4,
            use_learned_positional_embeddings=False,
            **common,
        )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        invert_scale_latents=version != "1.0",
    )
    text_encoder = T5EncoderModel(
        T5Config(
            d_model=32,
            d_ff=37,
            d_kv=8,
            num_heads=4,
            num_layers=2,
            vocab_size=64,
            relative_attention_num_buckets=8,
            feed_forward_proj="relu",
        )
    )
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({w: i + 3 for i, w in enumerate(WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    scheduler = CogVideoXDDIMScheduler(
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=1.0,
    )
    pipe = GuidedCogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
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
    from backend.guided.loading import Checkpoint, load_pipeline

    pipe = load_pipeline(Checkpoint(str(tiny_ckpt), tiny_ckpt), dtype="fp32", with_text_encoder=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def shifted_video(image: np.ndarray, num_frames: int, dx: int = 1) -> np.ndarray:
    """A layout prior: the image rolled dx pixels right per frame, (F, H, W, 3) uint8."""
    return np.stack([np.roll(image, dx * f, axis=1) for f in range(num_frames)])
