"""Loading a CogVideoX image-to-video checkpoint (diffusers layout, safetensors only) into a
GuidedCogVideoXPipeline on the CPU. Finding and checking the folder is backend/runtime/checkpoints.py."""

from __future__ import annotations

from ..runtime.checkpoints import PIPELINE_COMPONENTS, TEXT_COMPONENTS, Checkpoint, require_parts
from ..runtime.devices import torch_dtype
from ..runtime.text import load_text_encoder


def load_pipeline(ckpt: Checkpoint, *, dtype: str = "fp32", with_text_encoder: bool = False):
    """Load transformer, VAE and scheduler (and the text encoder and tokenizer when asked) from
    safetensors into a GuidedCogVideoXPipeline on the CPU."""
    require_parts(ckpt, PIPELINE_COMPONENTS + (TEXT_COMPONENTS if with_text_encoder else ()))
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXTransformer3DModel,
    )

    from .pipeline import GuidedCogVideoXPipeline

    td = torch_dtype(dtype)
    common = {"use_safetensors": True, "local_files_only": True, "torch_dtype": td}
    transformer = CogVideoXTransformer3DModel.from_pretrained(ckpt.path, subfolder="transformer", **common)
    vae = AutoencoderKLCogVideoX.from_pretrained(ckpt.path, subfolder="vae", **common)
    scheduler_cls = {"CogVideoXDPMScheduler": CogVideoXDPMScheduler}.get(
        ckpt.config("scheduler").get("_class_name"), CogVideoXDDIMScheduler
    )
    scheduler = scheduler_cls.from_pretrained(ckpt.path, subfolder="scheduler", local_files_only=True)
    tokenizer = text_encoder = None
    if with_text_encoder:
        tokenizer, text_encoder = load_text_encoder(ckpt, dtype=dtype)
    return GuidedCogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )
