"""GuidedCogVideoXPipeline on tiny random checkpoints: shapes, seeds, strength 1.0 == stock I2V,
first frame, the layout prior, warped noise, size limits, progress and stopping from a callback."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import reference_image, shifted_video

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

H = W = 16
F = 9


def run(pipe, seed=0, **kw):
    from PIL import Image

    args = dict(
        image=Image.fromarray(reference_image(H, W)),
        prompt="a cat runs",
        height=H,
        width=W,
        num_frames=F,
        num_inference_steps=4,
        guidance_scale=6.0,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    args.update(kw)
    return pipe(**args).frames


def test_shapes_and_range(tiny_pipe):
    video = shifted_video(reference_image(H, W), F)
    flow = np.zeros((F, H, W, 2), np.float32)
    flow[..., 0] = np.arange(F, dtype=np.float32)[:, None, None]
    out = run(tiny_pipe, video=video, strength=0.75, flow=flow, noise_warp=True)
    assert out.shape == (1, F, H, W, 3)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    latents = run(tiny_pipe, output_type="latent", video=video, strength=0.75)
    assert tuple(latents.shape) == (1, 3, 4, 2, 2)  # (B, latent frames, channels, h, w)


def test_same_seed_same_video_other_seed_differs(tiny_pipe):
    video = shifted_video(reference_image(H, W), F)
    a = run(tiny_pipe, seed=3, video=video, strength=0.5)
    b = run(tiny_pipe, seed=3, video=video, strength=0.5)
    c = run(tiny_pipe, seed=4, video=video, strength=0.5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_strength_one_equals_stock_pipeline(tiny_pipe):
    from diffusers import CogVideoXImageToVideoPipeline

    stock = CogVideoXImageToVideoPipeline(**tiny_pipe.components)
    stock.set_progress_bar_config(disable=True)
    video = shifted_video(reference_image(H, W), F)
    for output_type in ("latent", "np"):
        ours = run(
            tiny_pipe, seed=7, video=video, strength=1.0, keep_first_frame=False, output_type=output_type
        )
        theirs = run(stock, seed=7, output_type=output_type)
        torch.testing.assert_close(torch.as_tensor(ours), torch.as_tensor(theirs), rtol=0, atol=0)
    # ... and given the same explicit noise
    noise = torch.randn((1, 3, 4, 2, 2), generator=torch.Generator().manual_seed(1))
    ours = run(tiny_pipe, seed=2, latents=noise.clone(), keep_first_frame=False)
    theirs = run(stock, seed=2, latents=noise.clone())
    np.testing.assert_array_equal(ours, theirs)


def test_first_frame_is_the_reference(tiny_pipe):
    out = run(tiny_pipe, video=shifted_video(reference_image(H, W), F), strength=0.6)
    np.testing.assert_allclose(out[0, 0], reference_image(H, W) / 255.0, atol=1e-6)
    raw = run(tiny_pipe, video=shifted_video(reference_image(H, W), F), strength=0.6, keep_first_frame=False)
    assert (
        np.abs(raw[0, 0] - reference_image(H, W) / 255.0).max() > 0.01
    )  # random weights do not reproduce it


def test_low_strength_starts_from_the_layout_prior(tiny_pipe):
    video = shifted_video(reference_image(H, W), F, dx=3)
    prior = tiny_pipe.prepare_layout_latents(video, H, W, 0, torch.float32, "cpu")
    steps = []

    def count(pipe, i, t, kw):
        steps.append(int(t))
        return kw

    low = run(
        tiny_pipe,
        output_type="latent",
        video=video,
        strength=0.1,
        num_inference_steps=10,
        callback_on_step_end=count,
    )
    assert (
        len(steps) == 1 and steps[0] < 200
    )  # int(10 * 0.1) = 1 step, from the low-noise end of the schedule
    high = run(tiny_pipe, output_type="latent", video=video, strength=1.0, num_inference_steps=10)
    near = (low - prior).abs().mean().item()
    far = (high - prior).abs().mean().item()
    assert near < 0.5 * far


def test_progress_callback_every_step_and_stopping_skips_decode(tiny_pipe, monkeypatch):
    seen = []
    run(tiny_pipe, num_inference_steps=5, callback_on_step_end=lambda p, i, t, kw: seen.append(i) or kw)
    assert seen == [0, 1, 2, 3, 4]

    decodes = []
    original = type(tiny_pipe).decode_latents
    monkeypatch.setattr(
        type(tiny_pipe), "decode_latents", lambda self, x: decodes.append(1) or original(self, x)
    )

    class Stop(Exception):
        pass

    calls = []

    def stop_at_two(pipe, i, t, kw):
        calls.append(i)
        if i == 1:
            raise Stop
        return kw

    with pytest.raises(Stop):
        run(tiny_pipe, num_inference_steps=5, callback_on_step_end=stop_at_two)
    assert calls == [0, 1] and decodes == []
    run(tiny_pipe, num_inference_steps=1)
    assert decodes == [1]  # decode does run when nothing stops


def test_input_checks(tiny_pipe):
    video = shifted_video(reference_image(H, W), F)
    with pytest.raises(ValueError, match="needs a layout prior"):
        run(tiny_pipe, strength=0.5)
    with pytest.raises(ValueError, match="no denoising step"):
        run(tiny_pipe, video=video, strength=0.1, num_inference_steps=4)
    with pytest.raises(ValueError, match="needs a `flow`"):
        run(tiny_pipe, noise_warp=True)
    with pytest.raises(ValueError, match="7 frames"):
        run(tiny_pipe, video=video[:7], strength=0.5)
    with pytest.raises(ValueError, match="exactly 16x16 pixels and 9 frames"):
        run(tiny_pipe, height=24, width=16)
    with pytest.raises(ValueError, match="exactly 16x16 pixels and 9 frames"):
        run(tiny_pipe, num_frames=13)


def test_cogvideox_15_layout(tiny_ckpt_15):
    from PIL import Image

    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import Checkpoint

    pipe = load_pipeline(Checkpoint("tiny-1.5", tiny_ckpt_15), with_text_encoder=True)
    pipe.set_progress_bar_config(disable=True)
    h, w, f = 32, 48, 17
    image = reference_image(h, w)
    flow = np.zeros((f, h, w, 2), np.float32)
    flow[..., 1] = 2.0 * np.arange(f, dtype=np.float32)[:, None, None]
    args = dict(
        image=Image.fromarray(image),
        prompt="a dog walks",
        height=h,
        width=w,
        num_frames=f,
        num_inference_steps=3,
        max_sequence_length=16,
        output_type="np",
    )
    out = pipe(
        **args,
        video=shifted_video(image, f),
        strength=0.7,
        flow=flow,
        noise_warp=True,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert out.shape == (1, f, h, w, 3)
    np.testing.assert_allclose(out[0, 0], image / 255.0, atol=1e-6)
    assert any("trained" in m for m in pipe.size_warnings)
    for bad in (dict(num_frames=25), dict(height=40), dict(width=272)):
        with pytest.raises(ValueError, match="multiples of 16 up to 256x256"):
            pipe(**{**args, **bad})


def test_checkpoint_limits_of_the_real_configs():
    from backend.guided.pipeline import checkpoint_limits

    vae = {"block_out_channels": [128, 256, 256, 512]}
    v10 = checkpoint_limits(
        {
            "sample_height": 60,
            "sample_width": 90,
            "sample_frames": 49,
            "use_learned_positional_embeddings": True,
        },
        vae,
    )
    assert v10.check(480, 720, 49) == []
    with pytest.raises(ValueError, match="exactly 720x480 pixels and 49 frames"):
        v10.check(768, 1360, 49)
    v15 = checkpoint_limits(
        {
            "sample_height": 300,
            "sample_width": 300,
            "patch_size_t": 2,
            "use_learned_positional_embeddings": False,
        },
        vae,
    )
    assert v15.check(768, 1360, 81) == [] and v15.check(1360, 768, 161) == []
    assert v15.check(480, 720, 81)  # possible, outside the trained sizes: a warning
    with pytest.raises(ValueError, match="16N\\+1 frames"):
        v15.check(768, 1360, 57)
    with pytest.raises(ValueError, match="multiples of 16"):
        v15.check(768, 1352, 81)


def test_dpm_scheduler_branch(tiny_pipe):
    """CogVideoXDPMScheduler (the multistep variant some checkpoints ship) through the same loop:
    strength 1.0 still equals the stock pipeline, and SDEdit runs from the prior."""
    from diffusers import CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline

    from backend.guided.pipeline import GuidedCogVideoXPipeline

    parts = {
        **tiny_pipe.components,
        "scheduler": CogVideoXDPMScheduler.from_config(tiny_pipe.scheduler.config),
    }
    ours, stock = GuidedCogVideoXPipeline(**parts), CogVideoXImageToVideoPipeline(**parts)
    for p in (ours, stock):
        p.set_progress_bar_config(disable=True)
    a = run(ours, seed=5, keep_first_frame=False, output_type="latent")
    b = run(stock, seed=5, output_type="latent")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    video = shifted_video(reference_image(H, W), F)
    out = run(ours, seed=5, video=video, strength=0.5)
    assert out.shape == (1, F, H, W, 3) and np.isfinite(out).all()


def test_time_to_move_resets_the_masked_cells_until_tstrong(tiny_pipe):
    """Time-to-Move: the run starts at tweak_index from the prior noised there; after each step
    before tstrong_index the cells inside the mask hold the prior noised to the next step's level
    (same noise), the rest is the model's; from tstrong on the model is free everywhere."""
    video = shifted_video(reference_image(H, W), F, dx=2)
    prior = tiny_pipe.prepare_layout_latents(video, H, W, 0, torch.float32, "cpu")
    noise = torch.randn((1, 3, 4, 2, 2), generator=torch.Generator().manual_seed(5))
    mask = np.zeros((F, H, W), bool)
    mask[:, :, :8] = True  # the left latent column (cells are 8 px)
    tiny_pipe.scheduler.set_timesteps(10)
    full = tiny_pipe.scheduler.timesteps.clone()
    seen = {}

    def record(pipe, i, t, kw):
        seen[i] = (int(t), kw["latents"].clone())
        return kw

    run(
        tiny_pipe,
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
    assert [seen[i][0] for i in sorted(seen)] == [int(t) for t in full[2:]]  # 8 steps from index 2
    for i, (_, latents) in seen.items():
        step = 2 + i + 1
        if step >= 10:
            continue
        target = tiny_pipe.scheduler.add_noise(prior, noise, full[step : step + 1])
        inside = torch.allclose(latents[..., :, 0], target[..., :, 0], atol=1e-5)
        assert inside == (step < 5), (i, step)
        assert not torch.allclose(latents[..., :, 1], target[..., :, 1], atol=1e-3)  # outside: free


def test_time_to_move_at_index_zero_is_the_stock_pipeline(tiny_pipe):
    from diffusers import CogVideoXImageToVideoPipeline

    stock = CogVideoXImageToVideoPipeline(**tiny_pipe.components)
    stock.set_progress_bar_config(disable=True)
    video = shifted_video(reference_image(H, W), F)
    mask = np.ones((F, H, W), bool)
    ours = run(
        tiny_pipe,
        seed=9,
        video=video,
        guidance="ttm",
        ttm_mask=mask,
        tweak_index=0,
        tstrong_index=0,
        keep_first_frame=False,
    )
    np.testing.assert_array_equal(ours, run(stock, seed=9))
    with pytest.raises(ValueError, match="tweak_index"):
        run(tiny_pipe, video=video, guidance="ttm", ttm_mask=mask, tweak_index=3, tstrong_index=2)
    with pytest.raises(ValueError, match="ttm_mask"):
        run(tiny_pipe, video=video, guidance="ttm")
