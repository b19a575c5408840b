"""Tiny real models for the AnimateAnything tests (sizes: backend/animateanything/configs.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture
def tiny_stage2():
    """(base transformer, flow encoder, fusion, frequency stabilizer), seeded, in eval mode."""
    from diffusers import CogVideoXTransformer3DModel

    from backend.animateanything import configs
    from backend.animateanything.flow_encoder import FlowEncoder3D
    from backend.animateanything.flow_fusion import FlowFusionBlock
    from backend.animateanything.frequency_attention import FrequencyStabilizer

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(**configs.TINY_COGVIDEOX_TRANSFORMER).eval()
    encoder = FlowEncoder3D(**configs.TINY_FLOW_ENCODER).eval()
    fusion = FlowFusionBlock(**configs.TINY_FLOW_FUSION).eval()
    stabilizer = FrequencyStabilizer(**configs.TINY_FREQUENCY_STABILIZER).eval()
    return transformer, encoder, fusion, stabilizer


def tiny_crm_config() -> dict:
    from backend.animateanything import configs

    cam = configs.TINY_CAMERA_ENCODER
    return dict(
        in_channels=4,  # = the tiny image VAE's latent channels
        num_context_tokens=1,
        camera_block_out_channels=cam["block_out_channels"],
        camera_layers_per_block=cam["layers_per_block"],
        camera_temporal_attention_heads=cam["temporal_attention_heads"],
        camera_attention_heads=2,  # must divide the UNet widths (16, 32)
        **configs.TINY_UNET,
    )


def tiny_fgm_config() -> dict:
    from backend.animateanything import configs

    return dict(
        latent_channels=4,  # = the tiny flow VAE's latent channels
        condition_channels=4,
        motion_num_attention_heads=2,  # must divide the UNet widths
        motion_max_seq_length=16,  # >= the frames of a test (9)
        num_context_tokens=1,
        condition_encoder_channels=(8, 8, 8, 8),  # three stride-2 steps = 8x, the VAE's factor
        **configs.TINY_UNET,
    )


@pytest.fixture
def tiny_stage1():
    """(flow VAE, CRM, FGM), seeded, eval mode; FGM and CRM pair up layer by layer."""
    from backend.animateanything import configs
    from backend.animateanything.camera_reference import CameraReferenceModel
    from backend.animateanything.flow_generation import FlowGenerationModel
    from backend.animateanything.flow_vae import FlowVAE

    torch.manual_seed(0)
    vae = FlowVAE(**configs.TINY_FLOW_VAE).eval()
    crm = CameraReferenceModel(**tiny_crm_config()).eval()
    fgm = FlowGenerationModel(**tiny_fgm_config()).eval()
    return vae, crm, fgm


def build_tiny_pipeline(seed: int = 0, stage1: bool = True, text: bool = True):
    """An AnimateAnythingPipeline of tiny random real models (32x32 pixels, 9 frames)."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
        DDIMScheduler,
    )

    from backend.animateanything import configs
    from backend.animateanything.camera_reference import CameraReferenceModel
    from backend.animateanything.flow_encoder import FlowEncoder3D
    from backend.animateanything.flow_fusion import FlowFusionBlock
    from backend.animateanything.flow_generation import FlowGenerationModel
    from backend.animateanything.flow_vae import FlowVAE
    from backend.animateanything.frequency_attention import FrequencyStabilizer
    from backend.animateanything.pipeline import AnimateAnythingPipeline
    from tests.tiny_text import tiny_text_encoder, tiny_tokenizer

    torch.manual_seed(seed)
    parts = dict(
        transformer=CogVideoXTransformer3DModel(**configs.TINY_COGVIDEOX_TRANSFORMER),
        vae=AutoencoderKLCogVideoX(**configs.TINY_COGVIDEOX_VAE),
        scheduler=CogVideoXDDIMScheduler(
            prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"
        ),
        tokenizer=tiny_tokenizer() if text else None,
        text_encoder=tiny_text_encoder().eval() if text else None,
        flow_encoder=FlowEncoder3D(**configs.TINY_FLOW_ENCODER),
        flow_fusion=FlowFusionBlock(**configs.TINY_FLOW_FUSION),
        frequency_stabilizer=FrequencyStabilizer(**configs.TINY_FREQUENCY_STABILIZER),
    )
    if stage1:
        parts.update(
            flow_vae=FlowVAE(**configs.TINY_FLOW_VAE),
            flow_generator=FlowGenerationModel(**tiny_fgm_config()),
            camera_reference=CameraReferenceModel(**tiny_crm_config()),
            image_vae=AutoencoderKL(in_channels=3, out_channels=3, **configs.TINY_FLOW_VAE),
            flow_scheduler=DDIMScheduler(),
        )
    pipe = AnimateAnythingPipeline(**parts)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return pipe


def save_base(pipe, folder):
    """Save the CogVideoX parts of an AnimateAnythingPipeline as a stock diffusers
    CogVideoXImageToVideoPipeline folder (safetensors): a base checkpoint to reference."""
    from diffusers import CogVideoXImageToVideoPipeline

    CogVideoXImageToVideoPipeline(
        tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, transformer=pipe.transformer,
        scheduler=pipe.scheduler,
    ).save_pretrained(folder, safe_serialization=True)  # fmt: skip
    return folder
