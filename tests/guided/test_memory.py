"""The memory plan: a pure function of free bytes and the request, checked against the real
CogVideoX sizes; applying it to a tiny pipeline (backend/runtime/memory.py, placement.py)."""

from __future__ import annotations

import pytest

from backend.runtime import memory, placement, real_configs
from backend.runtime.memory import GiB, ModelSpec, plan_memory


def card(gb: float) -> int:
    return int(gb * GiB)


def test_bigger_cards_get_faster_settings():
    spec = ModelSpec()  # CogVideoX-5b-I2V, 720x480x49, guidance, layout prior, T5 needed
    p80, p48, p24 = (plan_memory(card(g), spec) for g in (79.4, 47.4, 23.4))
    assert (p80.offload, p80.vae_tiling) == ("none", False)
    assert (p48.offload, p48.vae_tiling) == ("none", False)
    assert p24.fits and p24.dtype == "bf16" and p24.offload == "none" and p24.vae_tiling  # a 24 GB card works
    p16 = plan_memory(card(16), spec)
    assert p16.fits and p16.offload in ("model", "group")  # 10.5 GiB transformer + activations: at the edge
    p8 = plan_memory(card(8), spec)
    assert p8.fits and p8.offload in ("group", "sequential")
    for plan, free in ((p80, 79.4), (p24, 23.4), (p16, 16), (p8, 8)):
        assert plan.peak_bytes <= card(free)


def test_nothing_fits_is_reported_not_hidden():
    plan = plan_memory(card(2), ModelSpec())
    assert not plan.fits and plan.offload == "sequential" and plan.vae_tiling
    assert "out-of-memory" in plan.reasons[-1]


def test_user_choices_are_kept():
    plan = plan_memory(card(80), ModelSpec(), dtype="fp16", offload="sequential", vae_tiling="on")
    assert (plan.dtype, plan.offload, plan.vae_tiling) == ("fp16", "sequential", True)
    plan = plan_memory(card(24), ModelSpec(), offload="none", vae_tiling="off")
    assert (plan.offload, plan.vae_tiling) == ("none", False) and not plan.fits
    assert plan_memory(card(80), ModelSpec(), bf16_supported=False).dtype == "fp16"


def test_cpu_plan_never_offloads():
    plan = plan_memory(card(64), ModelSpec(), device="cpu", offload="model")
    assert plan.dtype == "fp32" and plan.offload == "none"
    assert any("ignored on the CPU" in r for r in plan.reasons)


def test_unknown_free_memory_picks_the_fastest():
    plan = plan_memory(None, ModelSpec())
    assert plan.fits and plan.offload == "none" and not plan.vae_tiling


def test_estimates_follow_the_real_sizes():
    spec = ModelSpec()
    assert spec.latent_frames == 13 and spec.tokens() == 13 * 30 * 45 + 226
    phases = memory.phase_peaks(spec, "bf16", "none", False)
    weights = 2 * (memory.COGVIDEOX_5B_I2V_TRANSFORMER + memory.COGVIDEOX_VAE)
    assert weights < phases["denoise"] < weights + 4 * GiB
    assert phases["decode"] > phases["denoise"]  # the untiled VAE decode is the peak
    tiled = memory.phase_peaks(spec, "bf16", "none", True)
    assert tiled["decode"] < phases["decode"] - 4 * GiB
    assert "text_encoder" not in memory.phase_peaks(
        ModelSpec(text_encoder_needed=False), "bf16", "none", True
    )
    assert "text_encoder" not in memory.phase_peaks(ModelSpec(), "bf16", "group", True)  # T5 on the CPU
    v15 = ModelSpec.from_configs(real_configs.cogvideox_15_5b_i2v_transformer(), 768, 1360, 81)
    assert v15.latent_frames == 22 and v15.tokens() == 11 * 48 * 85 + 226
    assert memory.vae_peak_bytes(v15, 2, False) > 3 * memory.vae_peak_bytes(spec, 2, False) / 2


@pytest.mark.torch
def test_parameter_counts_match_the_real_configs():
    pytest.importorskip("diffusers")
    counts = real_configs.real_parameter_counts(include_text_encoder=False)
    assert counts["transformer_1.0"] == memory.COGVIDEOX_5B_I2V_TRANSFORMER
    assert counts["transformer_1.5"] == memory.COGVIDEOX_15_5B_I2V_TRANSFORMER
    assert counts["vae"] == memory.COGVIDEOX_VAE


@pytest.mark.torch
def test_apply_plan_on_cpu_sets_vae_switches(tiny_pipe):
    plan = plan_memory(card(64), ModelSpec(), device="cpu", vae_tiling="on")
    placement.apply_plan(tiny_pipe, plan)
    try:
        assert tiny_pipe.vae.use_tiling and tiny_pipe.vae.use_slicing
    finally:
        placement.apply_plan(tiny_pipe, plan_memory(card(64), ModelSpec(), device="cpu", vae_tiling="off"))
    assert not tiny_pipe.vae.use_tiling and not tiny_pipe.vae.use_slicing


def _run_tiny(pipe):
    """The tiny guided pipeline's video (9 frames, 16x16, 2 steps, strength 0.5) for a fixed seed."""
    import torch
    from PIL import Image

    from .conftest import reference_image, shifted_video

    pipe.set_progress_bar_config(disable=True)
    image = reference_image(16, 16)
    return pipe(
        image=Image.fromarray(image),
        prompt="a cat",
        height=16,
        width=16,
        num_frames=9,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        video=shifted_video(image, 9),
        strength=0.5,
    ).frames


@pytest.mark.torch
@pytest.mark.parametrize("offload", ["model", "group"])
def test_offloaded_pipeline_gives_the_same_video(tiny_ckpt, tiny_pipe, offload):
    """The offload switches (exercised CPU -> CPU here; the planner only picks them on a GPU) do
    not change the result, and VAE tiling/slicing are set as planned."""
    import numpy as np

    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import Checkpoint

    pipe = load_pipeline(Checkpoint("tiny", tiny_ckpt), with_text_encoder=True)
    plan = memory.MemoryPlan("cpu", "fp32", offload, vae_tiling=True, vae_slicing=True, peak_bytes=0)
    placement.apply_plan(pipe, plan)
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    np.testing.assert_array_equal(_run_tiny(pipe), _run_tiny(tiny_pipe))


@pytest.mark.torch
def test_sequential_offload_is_refused_on_the_cpu(tiny_pipe):
    """diffusers' sequential offload with CPU as execution device fails in the first forward
    (placement.apply_plan's docstring says why): apply_plan refuses it up front, pipeline untouched."""
    from backend.errors import JobFailure

    plan = memory.MemoryPlan("cpu", "fp32", "sequential", vae_tiling=False, vae_slicing=True, peak_bytes=0)
    with pytest.raises(JobFailure) as info:
        placement.apply_plan(tiny_pipe, plan)
    assert info.value.kind == "invalid_job" and "needs a GPU" in info.value.message
    assert not hasattr(tiny_pipe.transformer, "_hf_hook")


@pytest.mark.torch
def test_sequential_offload_hooks_give_the_same_video(tiny_ckpt, tiny_pipe):
    """The hooks a CUDA run with offload 'sequential' gets (accelerate.cpu_offload on every component,
    as diffusers' enable_sequential_cpu_offload attaches them: weights on "meta" between forwards,
    loaded per leaf module from the CPU state dict), run with an index-less CPU execution device
    (`cpu`, where diffusers would pass `cpu:0`, see placement.apply_plan): transformer, VAE (tiling,
    slicing, causal-conv caches) and T5 give the unhooked pipeline's result bit for bit."""
    import numpy as np
    import torch
    from accelerate import cpu_offload

    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import Checkpoint

    pipe = load_pipeline(Checkpoint("tiny", tiny_ckpt), with_text_encoder=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):  # diffusers' enable_sequential_cpu_offload, device "cpu"
            cpu_offload(component, torch.device("cpu"), offload_buffers=len(component._parameters) > 0)
    pipe.vae.enable_tiling()
    pipe.vae.enable_slicing()
    assert pipe.transformer.proj_out.weight.device.type == "meta"  # really offloaded between forwards
    np.testing.assert_array_equal(_run_tiny(pipe), _run_tiny(tiny_pipe))
    assert pipe.transformer.proj_out.weight.device.type == "meta"
