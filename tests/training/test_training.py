"""Training losses of both stages at tiny sizes: finite, differentiable, only the trained parts move."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from backend.animateanything.flow_generation import build_condition  # noqa: E402
from backend.animateanything.transformer import AnimateAnythingTransformer  # noqa: E402
from backend.training.losses import (  # noqa: E402
    Stage1Batch,
    Stage2Batch,
    rotary_embeddings,
    set_stage1_trainable,
    stage1_loss,
    stage2_loss,
)

pytestmark = pytest.mark.torch


def test_rotary_embeddings_match_the_stock_pipeline(tiny_stage2):
    transformer = tiny_stage2[0]
    cos, sin = rotary_embeddings(transformer, 32, 32, 3, "cpu")
    assert cos.shape == sin.shape == (3 * 2 * 2, 16)  # 3 latent frames x 2x2 tokens, head dim 16


def test_stage2_training_step(tiny_stage2):
    from diffusers import CogVideoXDDIMScheduler

    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer, flow_noise_std=0.2)
    model.set_trainable()
    model.train()
    scheduler = CogVideoXDDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 3, 4, 4, 4, generator=g)
    image = torch.zeros_like(latents)
    image[:, 0] = latents[:, 0]
    batch = Stage2Batch(
        latents, image, torch.randn(2, 16, 32, generator=g), torch.randn(2, 9, 32, 32, 2, generator=g)
    )
    frozen = {k: v.clone() for k, v in transformer.state_dict().items()}
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = stage2_loss(model, scheduler, batch, generator=torch.Generator().manual_seed(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(p.grad is None for p in transformer.parameters())
    assert all(torch.equal(frozen[k], v) for k, v in transformer.state_dict().items())
    assert fusion.attn.to_out[0].weight.abs().sum() > 0 and not torch.all(stabilizer.weight == 1)
    assert losses[-1] < losses[0]  # same noise and timesteps each step: the trained parts fit it


def test_stage1_training_step(tiny_stage1):
    from diffusers import DDPMScheduler

    vae, crm, fgm = tiny_stage1
    set_stage1_trainable(fgm, crm, vae)
    fgm.train()
    crm.train()
    g = torch.Generator().manual_seed(0)
    frames = 5
    flow = torch.randn(frames, 2, 32, 32, generator=g) * 3
    with torch.no_grad():
        flow_latents = vae.encode_flow(flow).transpose(0, 1)[None]  # (1, C, F, h, w)
    sparse = torch.zeros(1, frames, 32, 32, 2)
    mask = torch.zeros(1, frames, 32, 32)
    sparse[0, :, 8, 8] = flow[:, :, 8, 8]
    mask[0, :, 8, 8] = 1
    batch = Stage1Batch(
        flow_latents, torch.randn(1, 4, 4, 4, generator=g), torch.randn(1, frames, 6, 32, 32, generator=g),
        build_condition(sparse, mask),
    )  # fmt: skip
    loss = stage1_loss(fgm, crm, DDPMScheduler(), batch, generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in vae.parameters())
    assert fgm.condition_encoder.net[0].weight.grad.abs().sum() > 0
    assert crm.unet.conv_in.weight.grad.abs().sum() > 0  # reference attention carries gradient to the CRM
    assert crm.camera_attentions[0].attn.to_out[0].weight.grad.abs().sum() > 0  # the zero start can learn
