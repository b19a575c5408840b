"""Stage 2 at tiny sizes: shapes, the identity start, the frequency processor, gradients, round trips."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from backend.animateanything.flow_encoder import FlowEncoder3D  # noqa: E402
from backend.animateanything.flow_fusion import FlowFusionBlock  # noqa: E402
from backend.animateanything.flow_vae import flow_to_unit, unit_to_flow  # noqa: E402
from backend.animateanything.frequency_attention import (  # noqa: E402
    FrequencyStabilizer,
    frequency_filter,
)
from backend.animateanything.transformer import AnimateAnythingTransformer  # noqa: E402

pytestmark = pytest.mark.torch

FRAMES, HEIGHT, WIDTH = 9, 32, 32  # 9 = 4k+1 video frames -> 3 latent frames; 32 px -> 4x4 latents


def _inputs(transformer, batch=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    t = (FRAMES - 1) // 4 + 1
    hidden = torch.randn(batch, t, cfg.in_channels, HEIGHT // 8, WIDTH // 8, generator=g)
    text = torch.randn(
        batch, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g
    )  # learned pos emb: full length
    timestep = torch.full((batch,), 500, dtype=torch.long)
    flow = torch.randn(batch, FRAMES, HEIGHT, WIDTH, 2, generator=g) * 3.0
    flow[:, 0] = 0
    return hidden, text, timestep, flow


def _rotary(transformer):
    from backend.animateanything.transformer import rotary_embeddings

    return rotary_embeddings(transformer, HEIGHT, WIDTH, (FRAMES - 1) // 4 + 1, "cpu")


def _plain(config) -> dict:
    return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))


def test_flow_normalisation_round_trip_and_scale():
    flow = torch.zeros(1, 2, 480, 720)
    flow[0, 0, 0, 0], flow[0, 1, 0, 0], flow[0, 0, 0, 1] = 60.0, -36.0, -15.0
    unit = flow_to_unit(flow)
    # FloVD's scale at 720x480 is (60, 36) pixels: 60 px right -> +1, 36 px up -> -1, 15 px left -> -0.5.
    assert unit[0, 0, 0, 0].item() == pytest.approx(1.0)
    assert unit[0, 1, 0, 0].item() == pytest.approx(-1.0)
    assert unit[0, 0, 0, 1].item() == pytest.approx(-0.5)
    torch.testing.assert_close(unit_to_flow(unit), flow, atol=1e-4, rtol=1e-5)


def test_flow_encoder_geometry_is_causal():
    enc = FlowEncoder3D(
        in_channels=2, out_channels=5, block_out_channels=(8, 8, 8, 8), norm_num_groups=4
    ).eval()
    x = torch.randn(2, 9, 2, 32, 48)
    with torch.no_grad():
        y = enc(x)
        assert y.shape == (2, 3, 5, 4, 6)  # 4x temporal (causal, 4k+1), 8x8 spatial
        # Changing the last frame must not change latent frames 0 and 1 (causality).
        x2 = x.clone()
        x2[:, -1] += 1.0
        y2 = enc(x2)
    torch.testing.assert_close(y2[:, :2], y[:, :2])
    assert not torch.allclose(y2[:, 2], y[:, 2])
    with pytest.raises(ValueError, match="4k\\+1"):
        enc(torch.randn(1, 8, 2, 32, 32))


def test_fusion_starts_as_identity_and_uses_flow_once_trained(tiny_stage2):
    _, _, fusion, _ = tiny_stage2
    hidden = torch.randn(2, 12, 32)  # 3 frames x 2x2 tokens, width 32
    flow_latents = torch.randn(1, 3, 4, 4, 4)
    with torch.no_grad():
        out = fusion(hidden, flow_latents)
        assert torch.equal(out, hidden)  # zero-initialised output projections
        torch.nn.init.normal_(fusion.attn.to_out[0].weight, std=0.1)
        out_a = fusion(hidden, flow_latents)
        out_b = fusion(hidden, flow_latents + 1.0)
    assert out_a.shape == hidden.shape
    assert not torch.allclose(out_a, hidden)
    assert not torch.allclose(out_a, out_b)  # the output depends on the flow (keys/values)
    with pytest.raises(ValueError, match="one latent grid"):
        fusion(hidden, torch.randn(1, 3, 4, 8, 8))


def test_frequency_filter_identity_lowpass_and_interpolation():
    x = torch.randn(1, 2, 5 * 3, 4)  # 5 frames x 3 tokens, 2 heads x 4 dims
    zero = torch.zeros(3, 8)
    assert torch.equal(frequency_filter(x, zero, 5), x)  # W = 1 -> exactly x
    # W = 0 everywhere except DC -> every frame becomes the temporal mean.
    w = torch.full((3, 8), -1.0)
    w[0] = 0.0
    y = frequency_filter(x, w, 5).reshape(1, 2, 5, 3, 4)
    mean = x.reshape(1, 2, 5, 3, 4).mean(dim=2, keepdim=True).expand_as(y)
    torch.testing.assert_close(y, mean, atol=1e-5, rtol=1e-5)
    stab = FrequencyStabilizer(num_layers=1, inner_dim=8, num_frequency_bins=7)
    assert stab.layer_weight(0, 3).shape == (3, 3, 8)
    assert torch.equal(stab.layer_weight(0, 3), torch.ones(3, 3, 8))  # ones stay ones when resampled


def test_identity_start_transformer_equals_stock_cogvideox(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    hidden, text, timestep, flow = _inputs(transformer, batch=2)
    rotary = _rotary(transformer)
    with torch.no_grad():
        base = transformer(hidden, text, timestep, image_rotary_emb=rotary, return_dict=False)[0]
        guided = model(hidden, text, timestep, flow=flow, image_rotary_emb=rotary, return_dict=False)[0]
    assert guided.shape == base.shape == (2, 3, 4, 4, 4)
    assert torch.equal(guided, base)  # bit-exact, not only close
    # Outside the conditioning context the stock processors are back.
    assert all(type(p).__name__ == "CogVideoXAttnProcessor2_0" for p in transformer.attn_processors.values())


def test_frequency_weights_change_the_output_only_when_not_one(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    hidden, text, timestep, _ = _inputs(transformer)
    rotary = _rotary(transformer)
    with torch.no_grad():
        base = transformer(hidden, text, timestep, image_rotary_emb=rotary).sample
        same = model(hidden, text, timestep, image_rotary_emb=rotary).sample
        stabilizer.weight[1, :, 1] = 0.0  # layer 1: drop the highest temporal frequency of Q/K/V
        changed = model(hidden, text, timestep, image_rotary_emb=rotary).sample
    assert torch.equal(same, base)
    assert (changed - base).abs().max() > 1e-4


def test_fusion_changes_output_once_trained(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    hidden, text, timestep, flow = _inputs(transformer)
    with torch.no_grad():
        torch.nn.init.normal_(fusion.attn.to_out[0].weight, std=0.2)
        a = model(hidden, text, timestep, flow=flow).sample
        b = model(hidden, text, timestep, flow=flow.flip(-1)).sample
        base = transformer(hidden, text, timestep).sample
    assert not torch.allclose(a, base)
    assert not torch.allclose(a, b)


def test_gradients_reach_only_the_trained_parts(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer, flow_noise_std=0.1)
    model.set_trainable()
    model.train()
    hidden, text, timestep, flow = _inputs(transformer)
    # Step away from the zero/identity start so every trained tensor is on the gradient path.
    with torch.no_grad():
        torch.nn.init.normal_(fusion.attn.to_out[0].weight, std=0.1)
        torch.nn.init.normal_(fusion.ff.net[-1].weight, std=0.1)
    out = model(hidden, text, timestep, flow=flow).sample
    out.square().mean().backward()
    assert all(p.grad is None for p in transformer.parameters())
    assert all(not p.requires_grad for p in transformer.parameters())
    trained = dict(model.named_parameters())
    for name, p in trained.items():
        if name.startswith("transformer."):
            continue
        assert p.grad is not None, name
    assert encoder.conv_in.weight.grad.abs().sum() > 0
    assert stabilizer.weight.grad.abs().sum() > 0
    n_trained = sum(p.numel() for p in model.trainable_parameters())
    n_all = sum(p.numel() for p in model.parameters())
    assert n_trained == n_all - sum(p.numel() for p in transformer.parameters())


def test_flow_noise_augmentation_only_in_training(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer, flow_noise_std=0.5)
    _, _, _, flow = _inputs(transformer)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.encode_flow(flow), model.encode_flow(flow))
        model.train()
        a = model.encode_flow(flow, generator=torch.Generator().manual_seed(0))
        b = model.encode_flow(flow, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def test_incompatible_parts_are_named(tiny_stage2):
    transformer, encoder, _, stabilizer = tiny_stage2
    wrong = FlowFusionBlock(flow_channels=4, num_attention_heads=4, attention_head_dim=8, patch_size=2)
    with pytest.raises(ValueError, match="flow_fusion.num_attention_heads"):
        AnimateAnythingTransformer(transformer, encoder, wrong, stabilizer)


def test_processor_refuses_unknown_grid():
    from diffusers.models.attention_processor import Attention

    from backend.animateanything.frequency_attention import FrequencyStabilizedAttnProcessor

    attn = Attention(query_dim=32, heads=2, dim_head=16, qk_norm="layer_norm", eps=1e-6, bias=True)
    stab = FrequencyStabilizer(num_layers=1, inner_dim=32, num_frequency_bins=2)
    attn.set_processor(FrequencyStabilizedAttnProcessor(stab, 0))
    with pytest.raises(RuntimeError, match="token grid"):
        attn(torch.randn(1, 4, 32), encoder_hidden_states=torch.randn(1, 2, 32))
    with pytest.raises(RuntimeError, match="token grid"):  # 4 video tokens do not split into 3 frames
        attn(torch.randn(1, 4, 32), encoder_hidden_states=torch.randn(1, 2, 32), token_frames=3)
    # The frame count arrives as an attention kwarg (the route of the transformer's attention_kwargs).
    video, text = attn(torch.randn(1, 4, 32), encoder_hidden_states=torch.randn(1, 2, 32), token_frames=2)
    assert video.shape == (1, 4, 32) and text.shape == (1, 2, 32)


def test_frame_count_and_flow_travel_in_attention_kwargs_not_in_state(tiny_stage2):
    """No hook on the transformer and no shared grid: the frame count and the flow latents of a call
    are in its attention_kwargs (CogVideoX 1.0: one latent frame per token frame)."""
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    hidden, text, timestep, flow = _inputs(transformer)
    flow_latents = model.encode_flow(flow)
    kwargs = model.attention_kwargs(hidden.shape[1], flow_latents, {"scale": 1.0})
    assert kwargs["token_frames"] == hidden.shape[1] and kwargs["flow_latents"] is flow_latents
    assert kwargs["scale"] == 1.0  # the caller's kwargs (e.g. a LoRA scale) are kept
    with model.conditioning():
        assert not transformer._forward_pre_hooks  # only block 0 is hooked (the fusion's way in)
        assert len(transformer.transformer_blocks[0]._forward_pre_hooks) == 1
        with torch.no_grad():  # the transformer called directly with those kwargs = the model's forward
            direct = transformer(hidden, text, timestep, attention_kwargs=kwargs).sample
    with torch.no_grad():
        torch.nn.init.normal_(fusion.attn.to_out[0].weight, std=0.2)
        via_model = model(hidden, text, timestep, flow_latents=flow_latents).sample
        with model.conditioning():
            direct_trained = transformer(hidden, text, timestep, attention_kwargs=kwargs).sample
    assert torch.equal(direct_trained, via_model) and not torch.equal(direct, via_model)
    assert not model.attached and not transformer.transformer_blocks[0]._forward_pre_hooks


def test_stage2_parts_save_load_round_trip(tmp_path, tiny_stage2):
    _, encoder, fusion, stabilizer = tiny_stage2
    with torch.no_grad():
        stabilizer.weight.uniform_(0.5, 1.5)
        torch.nn.init.normal_(fusion.attn.to_out[0].weight)
    for module in (encoder, fusion, stabilizer):
        folder = tmp_path / type(module).__name__
        module.save_pretrained(folder)
        assert (folder / "diffusion_pytorch_model.safetensors").exists()
        loaded = type(module).from_pretrained(folder)
        assert _plain(loaded.config) == _plain(module.config)
        for (k, a), (k2, b) in zip(module.state_dict().items(), loaded.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k


def test_gradient_checkpointing_path_keeps_identity_and_gradients(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer)
    model.set_trainable()
    transformer.enable_gradient_checkpointing()  # blocks are then called positionally
    model.train()
    hidden, text, timestep, flow = _inputs(transformer)
    with torch.no_grad():
        base = transformer(hidden, text, timestep).sample
    out = model(hidden, text, timestep, flow=flow).sample
    assert torch.equal(out.detach(), base)
    out.square().mean().backward()  # recomputes the blocks: still attached
    assert fusion.attn.to_out[0].weight.grad.abs().sum() > 0  # the fusion ran inside checkpointing
    assert stabilizer.weight.grad.abs().sum() > 0
    model.detach()
    assert all(type(p).__name__ == "CogVideoXAttnProcessor2_0" for p in transformer.attn_processors.values())


def test_one_training_step_moves_only_the_trained_parts(tiny_stage2):
    transformer, encoder, fusion, stabilizer = tiny_stage2
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer, flow_noise_std=0.1)
    model.set_trainable()
    model.train()
    frozen = {k: v.clone() for k, v in transformer.state_dict().items()}
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    hidden, text, timestep, flow = _inputs(transformer)
    target = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    for _ in range(2):  # step 1 leaves the zero outputs, step 2 moves everything behind them
        loss = (model(hidden, text, timestep, flow=flow).sample - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(frozen[k], v) for k, v in transformer.state_dict().items())
    assert fusion.attn.to_out[0].weight.abs().sum() > 0  # no longer zero
    model.eval()
    with torch.no_grad():
        assert not torch.equal(
            model(hidden, text, timestep, flow=flow).sample, transformer(hidden, text, timestep).sample
        )


def test_cogvideox15_layout_pads_flow_like_the_video(tiny_stage2):
    """CogVideoX 1.5 groups 2 latent frames per token (patch_size_t): identity still exact."""
    from diffusers import CogVideoXTransformer3DModel

    from backend.animateanything import configs

    _, encoder, _, _ = tiny_stage2
    cfg = dict(configs.TINY_COGVIDEOX_TRANSFORMER)
    cfg.update(
        patch_size_t=2, patch_bias=False, ofs_embed_dim=4, time_embed_dim=4, sample_height=8, sample_width=8,
        use_learned_positional_embeddings=False,
    )  # fmt: skip
    transformer = CogVideoXTransformer3DModel(**cfg).eval()
    fusion = FlowFusionBlock(**{**configs.TINY_FLOW_FUSION, "patch_size_t": 2}).eval()
    stabilizer = FrequencyStabilizer(**configs.TINY_FREQUENCY_STABILIZER)
    model = AnimateAnythingTransformer(transformer, encoder, fusion, stabilizer).eval()
    # 9 frames -> 3 flow latent frames; the video latents are padded at the front to 4 (2 token frames).
    hidden = torch.randn(1, 4, 8, 4, 4)
    text = torch.randn(1, 16, 32)
    flow = torch.randn(1, 9, 32, 32, 2)
    t, ofs = torch.tensor([300]), torch.tensor([2.0])
    with torch.no_grad():
        base = transformer(hidden, text, t, ofs=ofs).sample
        same = model(hidden, text, t, flow=flow, ofs=ofs).sample
        torch.nn.init.normal_(fusion.attn.to_out[0].weight, std=0.3)
        moved = model(hidden, text, t, flow=flow, ofs=ofs).sample
    assert torch.equal(same, base)
    assert not torch.allclose(moved, base)
