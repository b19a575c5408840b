"""Model configurations of AnimateAnything: the real sizes and tiny test sizes.

REAL_*: the sizes a trained checkpoint has (CogVideoX-5B-I2V for stage 2, SD1.5-class UNets for
stage 1). TINY_*: the smallest sizes that exercise every code path on a CPU in milliseconds; each
size constraint is commented. All are plain dicts for ``Model(**config)``.
"""

from __future__ import annotations

from ..runtime.real_configs import cogvideox_5b_i2v_transformer

# --------------------------------------------------------------------------- real sizes
# CogVideoX-5b-I2V transformer (its config.json; 5.57 B parameters): backend/runtime/configs/.
REAL_COGVIDEOX_TRANSFORMER = cogvideox_5b_i2v_transformer()

REAL_FLOW_ENCODER = dict(
    in_channels=2, out_channels=16, block_out_channels=(64, 128, 256, 512), layers_per_block=1,
    norm_num_groups=32, temporal_compression_ratio=4,
)  # fmt: skip
REAL_FLOW_FUSION = dict(
    flow_channels=16, num_attention_heads=48, attention_head_dim=64, patch_size=2, ff_mult=4
)
# 49 frames -> 13 latent frames -> 13 // 2 + 1 = 7 real-FFT bins.
REAL_FREQUENCY_STABILIZER = dict(num_layers=42, inner_dim=3072, num_frequency_bins=7)

# SD1.5-class flow VAE (SD VAE sizes, 2 channels in/out).
REAL_FLOW_VAE = dict(
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
    sample_size=512,
)  # fmt: skip
# SD1.5 UNet sizes (its unet/config.json) shared by FGM and CRM so that their attention layers pair up.
REAL_SD15_UNET = dict(
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    num_attention_heads=8,  # SD1.5's config calls this attention_head_dim (a legacy name for heads)
    norm_num_groups=32,
    sample_size=64,
)
REAL_CAMERA_ENCODER = dict(
    in_channels=6, downscale_factor=8, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    temporal_attention_heads=8, norm_num_groups=32,
)  # fmt: skip

# --------------------------------------------------------------------------- tiny sizes
# diffusers' own I2V test transformer, two layers (so per-layer frequency weights are exercised).
TINY_COGVIDEOX_TRANSFORMER = dict(
    num_attention_heads=2,
    attention_head_dim=16,  # heads x dim = 32 must be divisible by 16 (3-D sincos position embedding)
    in_channels=8,  # 4 noise + 4 image latent channels (the tiny VAE has 4 latent channels)
    out_channels=4,
    time_embed_dim=2,
    text_embed_dim=32,  # = the tiny T5 d_model
    num_layers=2,
    sample_width=4,  # latent 4x4 = a 32x32 image with the VAE's 8x spatial compression
    sample_height=4,
    sample_frames=9,  # 9 frames -> 3 latent frames (4k + 1 rule)
    patch_size=2,  # 4x4 latent / 2 = 2x2 tokens per frame
    temporal_compression_ratio=4,
    max_text_seq_length=16,
    use_rotary_positional_embeddings=True,
    use_learned_positional_embeddings=True,
)
TINY_COGVIDEOX_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("CogVideoXDownBlock3D",) * 4,  # 3 downsamples = 8x spatial, as the real VAE
    up_block_types=("CogVideoXUpBlock3D",) * 4,
    block_out_channels=(8, 8, 8, 8),
    latent_channels=4,
    layers_per_block=1,
    norm_num_groups=2,  # must divide 8
    temporal_compression_ratio=4,
)
TINY_T5 = dict(
    d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=1103, relative_attention_num_buckets=8,
    feed_forward_proj="relu",
)  # fmt: skip
TINY_FLOW_ENCODER = dict(
    in_channels=2,
    out_channels=4,
    block_out_channels=(8, 8, 16, 16),  # four stages = 8x spatial
    layers_per_block=1,
    norm_num_groups=4,  # must divide every width
    temporal_compression_ratio=4,  # must equal the transformer's
)
TINY_FLOW_FUSION = dict(
    flow_channels=4,  # = TINY_FLOW_ENCODER out_channels
    num_attention_heads=2,  # = the transformer's heads and head dim (its RoPE is reused)
    attention_head_dim=16,
    patch_size=2,  # = the transformer's patch size (one token grid)
    ff_mult=2,
)
TINY_FREQUENCY_STABILIZER = dict(
    num_layers=2,  # = transformer layers
    inner_dim=32,  # = heads x head dim
    num_frequency_bins=2,  # 3 latent frames -> 3 // 2 + 1 = 2 bins
)

TINY_FLOW_VAE = dict(
    down_block_types=("DownEncoderBlock2D",) * 4,  # 3 downsamples = 8x spatial, as SD's VAE
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 8, 8),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,  # must divide 8
    sample_size=32,
)
# UNet sizes shared by the tiny FGM and CRM: two levels, one attention level each way.
TINY_UNET = dict(
    block_out_channels=(16, 32),
    layers_per_block=1,
    cross_attention_dim=16,
    num_attention_heads=2,  # must divide 16 and 32
    norm_num_groups=8,  # must divide 16 and 32
    sample_size=4,
)
TINY_CAMERA_ENCODER = dict(
    in_channels=6,
    downscale_factor=8,  # PixelUnshuffle(8): Plücker at image size -> latent size
    block_out_channels=(16, 32),  # = the UNet widths, one scale per UNet level
    layers_per_block=1,
    temporal_attention_heads=2,
    norm_num_groups=8,
)
