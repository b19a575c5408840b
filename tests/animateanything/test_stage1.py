"""Stage 1 at tiny sizes: flow VAE, densification, Camera Reference Model, Flow Generation Model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from backend.animateanything.camera_reference import CameraReferenceModel  # noqa: E402
from backend.animateanything.flow_generation import (  # noqa: E402
    FlowGenerationModel,
    build_condition,
    densify_sparse_flow,
)
from backend.animateanything.flow_vae import FlowVAE  # noqa: E402

pytestmark = pytest.mark.torch

B, F, H, W = 1, 5, 32, 32  # 5 frames (any count <= motion_max_seq_length); 32 px -> 4x4 latents


def _sparse(seed=0):
    flow = torch.zeros(B, F, H, W, 2)
    mask = torch.zeros(B, F, H, W)
    for f in range(1, F):
        flow[:, f, 8, 10] = torch.tensor([2.0 * f, -1.0 * f])  # one track starting at x=10, y=8
        mask[:, f, 8, 10] = 1.0
    return flow, mask


def test_densify_is_exact_at_tracks_smooth_between_and_zero_far_away():
    flow = torch.zeros(1, 2, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    flow[0, :, 10, 10] = torch.tensor([4.0, -2.0])
    flow[0, :, 10, 30] = torch.tensor([-4.0, 6.0])
    mask[0, 0, 10, 10] = mask[0, 0, 10, 30] = 1.0
    dense, conf = densify_sparse_flow(flow, mask, sigma=4.0)  # kernel radius 12 covers the midpoint
    torch.testing.assert_close(dense[0, :, 10, 10], torch.tensor([4.0, -2.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(dense[0, :, 10, 30], torch.tensor([-4.0, 6.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(dense[0, :, 10, 20], torch.tensor([0.0, 2.0]), atol=1e-4, rtol=0)  # midway
    assert conf[0, 0, 10, 10] == pytest.approx(1.0)
    assert conf[0, 0, 60, 60] == 0 and torch.all(dense[0, :, 60, 60] == 0)  # beyond the 3-sigma kernel radius


def test_condition_channels_and_mask():
    flow, mask = _sparse()
    cond = build_condition(flow, mask, densify_sigma=0.1)
    assert cond.shape == (B, F, 6, H, W)
    assert torch.equal(cond[:, :, 5], mask)  # last channel is the mask
    assert torch.all(cond[:, 0] == 0)  # frame 0 has no motion
    assert cond[0, 2, 0, 8, 12] > 0 and cond[0, 2, 1, 8, 12] < 0  # densified around the track, same sign


def test_flow_vae_shapes_normalisation_and_round_trip(tmp_path, tiny_stage1):
    vae, _, _ = tiny_stage1
    flow = torch.randn(3, 2, H, W) * 4
    with torch.no_grad():
        z = vae.encode_flow(flow)
        out = vae.decode_flow(z)
    assert z.shape == (3, 4, H // 8, W // 8) and out.shape == flow.shape
    vae.save_pretrained(tmp_path / "vae")
    loaded = FlowVAE.from_pretrained(tmp_path / "vae").eval()
    assert tuple(loaded.config.flow_scale) == pytest.approx(tuple(vae.config.flow_scale))
    with torch.no_grad():
        assert torch.equal(loaded.decode_flow(z), out)
    with pytest.raises(ValueError, match="2-channel"):
        FlowVAE(in_channels=3)


def test_flow_vae_from_image_vae_keeps_the_pretrained_body():
    from diffusers import AutoencoderKL

    from backend.animateanything import configs

    cfg = {k: v for k, v in configs.TINY_FLOW_VAE.items()}
    image_vae = AutoencoderKL(in_channels=3, out_channels=3, **cfg)
    vae = FlowVAE.from_image_vae(image_vae)
    a, b = image_vae.state_dict(), vae.state_dict()
    assert torch.equal(
        a["encoder.mid_block.resnets.0.conv1.weight"], b["encoder.mid_block.resnets.0.conv1.weight"]
    )
    assert b["encoder.conv_in.weight"].shape[1] == 2 and b["decoder.conv_out.weight"].shape[0] == 2


def test_camera_encoder_scales_and_temporal_mixing():
    from backend.animateanything.camera_reference import CameraEncoder

    enc = CameraEncoder(block_out_channels=(16, 32, 32), layers_per_block=1, temporal_attention_heads=2,
                        norm_num_groups=8).eval()  # fmt: skip
    plucker = torch.randn(2, F, 6, H, W)
    with torch.no_grad():
        feats = enc(plucker)
        other = plucker.clone()
        other[:, 3] += 1.0
        feats2 = enc(other)
    # PixelUnshuffle(8) -> 4x4, then 2x2, then 1x1; one row per (batch, frame).
    assert [tuple(f.shape) for f in feats] == [(2 * F, 16, 4, 4), (2 * F, 32, 2, 2), (2 * F, 32, 1, 1)]
    # Temporal attention: changing frame 3's camera changes frame 0's features too.
    assert not torch.allclose(feats[0].reshape(2, F, -1)[:, 0], feats2[0].reshape(2, F, -1)[:, 0])


def test_crm_features_per_layer_and_camera_dependence(tiny_stage1):
    _, crm, _ = tiny_stage1
    ref = torch.randn(B, 4, H // 8, W // 8)
    plucker_a, plucker_b = torch.randn(B, F, 6, H, W), torch.randn(B, F, 6, H, W)
    with torch.no_grad():
        feats_a = crm(ref, plucker_a)
        feats_b = crm(ref, plucker_b)
    assert set(feats_a) == set(crm.reference_layer_names) and len(feats_a) == 4
    # Level 0 (4x4 tokens, 16 channels) and the mid block (2x2 tokens, 32 channels), one row per frame.
    assert feats_a["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"].shape == (B * F, 16, 16)
    assert feats_a["mid_block.attentions.0.transformer_blocks.0.attn1.processor"].shape == (B * F, 4, 32)
    # Zero-initialised camera motion attention: the camera has no effect yet (ReferenceNet start).
    assert all(torch.equal(feats_a[k], feats_b[k]) for k in feats_a)
    with torch.no_grad():
        for module in crm.camera_attentions:
            torch.nn.init.normal_(module.attn.to_out[0].weight, std=0.1)
        feats_a = crm(ref, plucker_a)
        feats_b = crm(ref, plucker_b)
    assert not torch.allclose(feats_a[crm.reference_layer_names[0]], feats_b[crm.reference_layer_names[0]])
    with pytest.raises(ValueError, match="8x the latent size"):
        crm(ref, torch.randn(B, F, 6, H // 2, W // 2))


def test_crm_from_sd_unet_copies_it():
    from diffusers import UNet2DConditionModel

    from backend.animateanything.camera_reference import unet_block_types

    from .conftest import tiny_crm_config  # noqa: F401  (fixture module)

    down, up = unet_block_types(2)
    unet = UNet2DConditionModel(
        sample_size=4, in_channels=4, out_channels=4, down_block_types=down, up_block_types=up,
        block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=16, attention_head_dim=2,
        norm_num_groups=8,
    )  # fmt: skip
    crm = CameraReferenceModel.from_unet(
        unet, num_context_tokens=1, camera_block_out_channels=(16, 32), camera_layers_per_block=1,
        camera_temporal_attention_heads=2, camera_attention_heads=2,
    )  # fmt: skip
    for k, v in unet.state_dict().items():
        assert torch.equal(crm.unet.state_dict()[k], v), k


def test_fgm_shapes_condition_and_reference_attention(tiny_stage1):
    _, crm, fgm = tiny_stage1
    ref = torch.randn(B, 4, H // 8, W // 8)
    sample = torch.randn(B, 4, F, H // 8, W // 8)
    flow, mask = _sparse()
    cond = build_condition(flow, mask)
    t = torch.tensor([500])
    with torch.no_grad():
        feats = crm(ref, torch.randn(B, F, 6, H, W))
        out = fgm(sample, t, cond, feats)
        no_ref = fgm(sample, t, cond, None)
        other_cond = fgm(sample, t, build_condition(-flow, mask), feats)
    assert out.shape == sample.shape
    assert not torch.allclose(out, no_ref)  # reference attention reads the CRM features
    assert not torch.allclose(out, other_cond)  # the sparse flow condition is used
    with pytest.raises(ValueError, match="reference features missing"):
        fgm(sample, t, cond, {})


def test_fgm_from_unet_motion_starts_as_the_pretrained_unet(tiny_stage1):
    from diffusers import UNetMotionModel

    _, _, fgm = tiny_stage1
    cfg = dict(fgm.unet.config)
    cfg["in_channels"] = 4
    base = UNetMotionModel.from_config(cfg).eval()
    model = FlowGenerationModel.from_unet_motion(
        base, condition_channels=4, num_context_tokens=1, condition_encoder_channels=(8, 8, 8, 8)
    ).eval()
    sample = torch.randn(B, 4, F, H // 8, W // 8)
    flow, mask = _sparse()
    context = torch.randn(B, 1, 16)
    with torch.no_grad():
        want = base(sample, torch.tensor([10]), context.repeat_interleave(F, dim=0)).sample
        got = model(
            sample, torch.tensor([10]), build_condition(flow, mask), None, encoder_hidden_states=context
        )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # zero weights on the new input channels


def test_fgm_from_unet_motion_extends_the_frame_limit(tiny_stage1):
    from diffusers import UNetMotionModel

    _, _, fgm = tiny_stage1
    cfg = dict(fgm.unet.config)
    cfg.update(in_channels=4, motion_max_seq_length=8)  # like AnimateDiff's 32, scaled down
    base = UNetMotionModel.from_config(cfg).eval()
    model = FlowGenerationModel.from_unet_motion(
        base, condition_channels=4, num_context_tokens=1, condition_encoder_channels=(8, 8, 8, 8),
        motion_max_seq_length=16,
    ).eval()  # fmt: skip
    assert model.unet.config.motion_max_seq_length == 16
    sample = torch.randn(B, 4, F, H // 8, W // 8)
    context = torch.randn(B, 1, 16)
    with torch.no_grad():
        want = base(sample, torch.tensor([10]), context.repeat_interleave(F, dim=0)).sample
        got = model(
            sample, torch.tensor([10]), build_condition(*_sparse()), None, encoder_hidden_states=context
        )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # the first 8 positions are the same


def test_stage1_gradients_reach_camera_encoder_and_condition_encoder(tiny_stage1):
    _, crm, fgm = tiny_stage1
    crm.train()
    fgm.train()
    with torch.no_grad():
        for module in crm.camera_attentions:
            torch.nn.init.normal_(module.attn.to_out[0].weight, std=0.1)
    feats = crm(torch.randn(B, 4, H // 8, W // 8), torch.randn(B, F, 6, H, W))
    flow, mask = _sparse()
    out = fgm(torch.randn(B, 4, F, H // 8, W // 8), torch.tensor([300]), build_condition(flow, mask), feats)
    out.square().mean().backward()
    assert crm.camera_encoder.conv_in.weight.grad.abs().sum() > 0
    assert fgm.condition_encoder.net[0].weight.grad.abs().sum() > 0
    assert fgm.unet.conv_in.weight.grad.abs().sum() > 0


def test_stage1_models_save_load_round_trip(tmp_path, tiny_stage1):
    _, crm, fgm = tiny_stage1
    with torch.no_grad():
        for module in crm.camera_attentions:
            torch.nn.init.normal_(module.attn.to_out[0].weight, std=0.1)
    crm.save_pretrained(tmp_path / "crm")
    fgm.save_pretrained(tmp_path / "fgm")
    crm2 = CameraReferenceModel.from_pretrained(tmp_path / "crm").eval()
    fgm2 = FlowGenerationModel.from_pretrained(tmp_path / "fgm").eval()
    ref, plucker = torch.randn(B, 4, H // 8, W // 8), torch.randn(B, F, 6, H, W)
    sample = torch.randn(B, 4, F, H // 8, W // 8)
    cond = build_condition(*_sparse())
    with torch.no_grad():
        want = fgm(sample, torch.tensor([5]), cond, crm(ref, plucker))
        got = fgm2(sample, torch.tensor([5]), cond, crm2(ref, plucker))
    assert (got - want).abs().max() < 1e-6, (got - want).abs().max()
