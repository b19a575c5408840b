"""GuidedWanPipeline on tiny saved Wan checkpoints: no guidance == the stock diffusers
WanImageToVideoPipeline bit for bit (Wan 2.1 with CLIP, 2.2 A14B with two experts, TI2V-5B),
Time-to-Move's dual clock, SDEdit, warped noise, Wan-Move's conditional/unconditional split, limits,
progress and stopping from a callback."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import F, H, W, load, reference_image, shifted_video

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def embeds(pipe):
    from backend.runtime.text import encode_prompts

    e = encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a cat runs", ""], 16, masked=True)
    return e[:1], e[1:]


def run(pipe, seed=0, size=H, **kw):
    from PIL import Image

    pos, neg = embeds(pipe)
    args = dict(
        image=Image.fromarray(reference_image(size, size)),
        prompt_embeds=pos,
        negative_prompt_embeds=neg,
        height=size,
        width=size,
        num_frames=F,
        num_inference_steps=4,
        guidance_scale=5.0,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    args.update(kw)
    return pipe(**args).frames


def stock_of(pipe):
    from diffusers import WanImageToVideoPipeline

    stock = WanImageToVideoPipeline(
        **pipe.components,
        boundary_ratio=pipe.config.boundary_ratio,
        expand_timesteps=pipe.config.expand_timesteps,
    )
    stock.set_progress_bar_config(disable=True)
    return stock


@pytest.mark.parametrize("which", ["wan21_ckpt", "wan_a14b_ckpt", "wan_ti2v_ckpt"])
def test_no_guidance_equals_the_stock_pipeline(which, request):
    pipe = load(request.getfixturevalue(which))
    size = 64 if which == "wan_ti2v_ckpt" else H
    stock = stock_of(pipe)
    for output_type in ("latent", "np"):
        ours = run(pipe, seed=3, size=size, output_type=output_type)
        theirs = run(stock, seed=3, size=size, output_type=output_type)
        torch.testing.assert_close(torch.as_tensor(ours), torch.as_tensor(theirs), rtol=0, atol=0)
    # Time-to-Move with both indices at 0 never touches the latents: the stock result again
    video = shifted_video(reference_image(size, size), F)
    ttm0 = run(
        pipe,
        seed=3,
        size=size,
        video=video,
        guidance="ttm",
        ttm_mask=np.ones((F, size, size), bool),
        tweak_index=0,
        tstrong_index=0,
    )
    np.testing.assert_array_equal(ttm0, run(stock, seed=3, size=size))


def test_a14b_switches_experts_at_the_boundary(wan_a14b_ckpt):
    pipe = load(wan_a14b_ckpt)
    calls = []
    hooks = [
        m.register_forward_hook(lambda mod, a, out, name=name: calls.append(name))
        for name, m in (("high", pipe.transformer), ("low", pipe.transformer_2))
    ]
    try:
        run(pipe, num_inference_steps=6, output_type="latent")
    finally:
        for h in hooks:
            h.remove()
    pipe.scheduler.set_timesteps(6)
    high = int((pipe.scheduler.timesteps >= 0.9 * 1000).sum())
    assert calls == ["high"] * (2 * high) + ["low"] * (2 * (6 - high))  # cond + uncond per step
    assert 0 < high < 6


def test_time_to_move_dual_clock(wan21_pipe):
    """From tweak_index the whole video starts at the preview noised there; inside the mask the
    latents are the preview noised to the next step's sigma until tstrong_index; outside: free."""
    pipe = wan21_pipe
    video = shifted_video(reference_image(H, W), F, dx=2)
    prior = pipe.prepare_prior_latents(video, H, W, "cpu")
    noise = torch.randn(prior.shape, generator=torch.Generator().manual_seed(8))
    mask = np.zeros((F, H, W), bool)
    mask[:, :16] = True  # the top latent half (cells are 8 px)
    seen = {}

    def record(p, i, t, kw):
        seen[i] = kw["latents"].clone()
        return kw

    run(
        pipe,
        latents=noise.clone(),
        video=video,
        guidance="ttm",
        ttm_mask=mask,
        tweak_index=2,
        tstrong_index=5,
        num_inference_steps=10,
        output_type="latent",
        callback_on_step_end=record,
    )
    assert sorted(seen) == list(range(8))
    sigmas = pipe.scheduler.sigmas
    for i, latents in seen.items():
        step = 2 + i + 1
        if step >= 10:
            continue
        target = (1 - sigmas[step]) * prior + sigmas[step] * noise
        inside = torch.allclose(latents[..., :2, :], target[..., :2, :], atol=1e-5)
        assert inside == (step < 5), (i, step)
        assert not torch.allclose(latents[..., 2:, :], target[..., 2:, :], atol=1e-3)


def test_sdedit_runs_the_last_steps_from_the_prior(wan21_pipe):
    steps = []
    video = shifted_video(reference_image(H, W), F)
    run(
        wan21_pipe,
        video=video,
        guidance="sdedit",
        strength=0.5,
        num_inference_steps=8,
        output_type="latent",
        callback_on_step_end=lambda p, i, t, kw: steps.append(int(t)) or kw,
    )
    wan21_pipe.scheduler.set_timesteps(8)
    assert steps == [int(t) for t in wan21_pipe.scheduler.timesteps[4:]]


def test_warped_noise_changes_the_start_and_keeps_the_seed(wan21_pipe):
    flow = np.zeros((F, H, W, 2), np.float32)
    flow[..., 0] = np.arange(F, dtype=np.float32)[:, None, None]  # 1 px per frame: under one cell
    a = run(wan21_pipe, flow=flow, noise_warp=True, output_type="latent")
    b = run(wan21_pipe, flow=flow, noise_warp=True, output_type="latent")
    plain = run(wan21_pipe, output_type="latent")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - plain).abs().max() > 1e-3


def test_wan_move_condition_and_the_unconditional_split(wan21_pipe):
    """The conditional pass sees frame 0's features copied along the tracks, the unconditional pass
    the stock image condition."""
    pipe = wan21_pipe
    tracks = np.zeros((2, F, 2), np.float32)
    tracks[0, :, 0] = 4.5 + 2.5 * np.arange(F)  # moves right: cell x 0 at frame 0, 1 at 4, 3 at 8
    tracks[0, :, 1] = 12.5
    tracks[1] = [[28.5, 28.5]] * F  # stays put in cell (3, 3)
    visible = np.ones((2, F), bool)
    seen = []
    hook = pipe.transformer.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["hidden_states"].clone()), with_kwargs=True
    )
    try:
        run(pipe, tracks=tracks, track_visible=visible, num_inference_steps=1, output_type="latent")
    finally:
        hook.remove()
    cond, uncond = seen  # one step: conditional then unconditional
    z = pipe.vae.config.z_dim
    stock = uncond[:, z + 4 :]  # the image latent the stock pipeline uses
    moved = cond[:, z + 4 :]
    torch.testing.assert_close(pipe.track_conditioning[:, 4:].to(moved.dtype), moved, rtol=0, atol=0)
    for k, f in ((1, 4), (2, 8)):
        x, y = int(tracks[0, f, 0] // 8), int(tracks[0, f, 1] // 8)
        torch.testing.assert_close(moved[0, :, k, y, x], stock[0, :, 0, 1, 0], rtol=0, atol=0)
        torch.testing.assert_close(moved[0, :, k, 3, 3], stock[0, :, 0, 3, 3], rtol=0, atol=0)
    untouched = torch.ones_like(moved[0, 0], dtype=torch.bool)
    untouched[1, 1, 1] = untouched[2, 1, 3] = untouched[1, 3, 3] = untouched[2, 3, 3] = False
    assert torch.equal(moved[0][:, untouched], stock[0][:, untouched])
    assert not torch.equal(moved, stock)
    torch.testing.assert_close(cond[:, : z + 4], uncond[:, : z + 4], rtol=0, atol=0)


def test_limits_and_input_checks(wan21_pipe, wan_ti2v_ckpt):
    with pytest.raises(ValueError, match="cannot generate 40x32"):
        run(wan21_pipe, width=40)
    with pytest.raises(ValueError, match="4N\\+1 frames"):
        run(wan21_pipe, num_frames=8)
    with pytest.raises(ValueError, match="needs the preview"):
        run(wan21_pipe, guidance="ttm")
    with pytest.raises(ValueError, match="needs a `flow`"):
        run(wan21_pipe, noise_warp=True)
    ti2v = load(wan_ti2v_ckpt)
    assert ti2v.limits().variant == "2.2-ti2v-5b" and ti2v.limits().multiple == 32
    with pytest.raises(ValueError, match="multiples of 32"):
        run(ti2v, size=48)
    with pytest.raises(ValueError, match="Wan-Move"):
        run(ti2v, size=64, tracks=np.zeros((1, F, 2)), track_visible=np.ones((1, F), bool))


def test_callback_raising_stops_before_the_decode(wan21_pipe, monkeypatch):
    decodes = []
    original = type(wan21_pipe.vae).decode
    monkeypatch.setattr(
        type(wan21_pipe.vae), "decode", lambda self, *a, **k: decodes.append(1) or original(self, *a, **k)
    )

    class Stop(Exception):
        pass

    def stop(p, i, t, kw):
        if i == 1:
            raise Stop
        return kw

    with pytest.raises(Stop):
        run(wan21_pipe, num_inference_steps=4, callback_on_step_end=stop)
    assert decodes == []
