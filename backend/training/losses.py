"""Training losses of both stages and what trains (the loop and data: train.py, data.py).

Stage 1 (paper: FGM and CRM trained on RealEstate10K / DL3DV-10K with Unimatch flow as ground
truth): :func:`stage1_loss`, epsilon-prediction MSE of the Flow Generation Model on Flow-VAE latents
of the ground-truth flow, with the CRM's reference features of the reference image + camera.
Trained: FGM and CRM completely (both start from SD1.5-class weights); frozen: Flow VAE, image VAE
(:func:`set_stage1_trainable`).

Stage 2 (paper: WebVid-10M / OpenVid, flow encoder + input block + stabilisation module trained,
the rest frozen): :func:`stage2_loss`, CogVideoX's own objective: v-prediction MSE on the video
latents, with the image latent (frame 0, zero-padded) concatenated on channels exactly as the stock
I2V pipeline does at inference, and the flow (with noise augmentation in training mode) through the
conditioning. :meth:`AnimateAnythingTransformer.set_trainable` freezes the rest.

Batches hold what a data loader precomputes once per clip with frozen encoders (VAE latents, T5
embeddings, Flow-VAE latents), the usual practice for CogVideoX fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..animateanything.camera_reference import CameraReferenceModel
from ..animateanything.flow_generation import FlowGenerationModel
from ..animateanything.transformer import AnimateAnythingTransformer, rotary_embeddings


@dataclass
class Stage2Batch:
    """latents: (B, T, C, h, w) CogVideoX VAE latents of the clip, already times ``scaling_factor``;
    image_latents: (B, T, C, h, w) latents of frame 0 in slot 0 and zeros after (the I2V layout);
    prompt_embeds: (B, L, D) T5; flow: (B, F, H, W, 2) pixels, forward flow from frame 0."""

    latents: torch.Tensor
    image_latents: torch.Tensor
    prompt_embeds: torch.Tensor
    flow: torch.Tensor


@dataclass
class Stage1Batch:
    """flow_latents: (B, C, F, h, w) Flow-VAE latents of the ground-truth flow (``encode_flow``);
    reference_latents: (B, 4, h, w) image-VAE latents of frame 0; plucker: (B, F, 6, 8h, 8w);
    condition: (B, F, 6, 8h, 8w) from ``build_condition`` of sparse tracks sampled from the flow."""

    flow_latents: torch.Tensor
    reference_latents: torch.Tensor
    plucker: torch.Tensor
    condition: torch.Tensor


def stage2_loss(
    model: AnimateAnythingTransformer,
    scheduler,
    batch: Stage2Batch,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """v-prediction MSE of the flow-guided transformer on one batch (timesteps uniform). `model`
    may be wrapped for several processes (DDP): its forward is called, attributes are read from
    the module inside."""
    core = getattr(model, "module", model)
    latents = batch.latents
    b, t, _, h, w = latents.shape
    device = latents.device
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), generator=generator, device="cpu"
    ).to(device)
    noise = torch.randn(latents.shape, generator=generator, device="cpu", dtype=latents.dtype).to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    rope = rotary_embeddings(core.transformer, h * 8, w * 8, t, device)
    ofs = None
    if core.transformer.config.ofs_embed_dim is not None:
        ofs = latents.new_full((b,), 2.0)
    pred = model(
        torch.cat([noisy, batch.image_latents], dim=2),
        batch.prompt_embeds,
        timesteps,
        flow=batch.flow,
        ofs=ofs,
        image_rotary_emb=rope,
    ).sample
    return F.mse_loss(pred.float(), target.float())


def set_stage1_trainable(
    fgm: FlowGenerationModel, crm: CameraReferenceModel, *frozen: torch.nn.Module
) -> None:
    """FGM and CRM trainable; every module in ``frozen`` (Flow VAE, image VAE) frozen."""
    fgm.requires_grad_(True)
    crm.requires_grad_(True)
    for module in frozen:
        module.requires_grad_(False)


class Stage1Model(torch.nn.Module):
    """FGM and CRM as one module, so one DDP wrapper averages the gradients of both (the CRM's
    features feed the FGM inside one forward)."""

    def __init__(self, fgm: FlowGenerationModel, crm: CameraReferenceModel):
        super().__init__()
        self.fgm, self.crm = fgm, crm

    def forward(self, noisy, timesteps, condition, reference_latents, plucker):
        features = self.crm(reference_latents, plucker)
        return self.fgm(noisy, timesteps, condition=condition, reference_features=features)


def stage1_loss(
    fgm: FlowGenerationModel,
    crm: CameraReferenceModel,
    scheduler,
    batch: Stage1Batch,
    generator: torch.Generator | None = None,
    *,
    model: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Epsilon-prediction MSE of FGM with CRM reference features (DDPM-style noise schedule).
    `model`: a (possibly DDP-wrapped) `Stage1Model` of the same FGM and CRM to run instead."""
    x0 = batch.flow_latents
    b = x0.shape[0]
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (b,), generator=generator, device="cpu"
    ).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device="cpu", dtype=x0.dtype).to(x0.device)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    if model is not None:
        pred = model(noisy, timesteps, batch.condition, batch.reference_latents, batch.plucker)
    else:
        features = crm(batch.reference_latents, batch.plucker)
        pred = fgm(noisy, timesteps, condition=batch.condition, reference_features=features)
    target = (
        noise
        if scheduler.config.prediction_type == "epsilon"
        else scheduler.get_velocity(x0, noise, timesteps)
    )
    return F.mse_loss(pred.float(), target.float())
