"""The memory plan for the Wan families (backend/runtime/wan_memory.py, memory.py): parameter counts
from the real configs, the plan per card size, fp8 only from compute capability 8.9 and when the
bf16 weights cannot be held, and fp8 layerwise casting applied to a tiny pipeline."""

from __future__ import annotations

import pytest

from backend.runtime import memory
from backend.runtime.memory import GiB, plan_memory
from backend.runtime.wan_memory import WAN_DEFAULT_FORMAT, WAN_PARAMS, wan_model_spec


def card(gb: float) -> int:
    return int((gb - 0.6) * GiB)


def test_parameter_counts_match_the_real_configs():
    pytest.importorskip("diffusers")
    from backend.runtime.real_configs import wan_parameter_counts

    assert wan_parameter_counts() == WAN_PARAMS


@pytest.mark.parametrize("variant", sorted(WAN_DEFAULT_FORMAT))
def test_every_family_fits_24_48_and_80_gb_cards(variant):
    h, w, f = WAN_DEFAULT_FORMAT[variant]
    spec = wan_model_spec(variant, h, w, f)
    plans = {gb: plan_memory(card(gb), spec, compute_capability=(9, 0)) for gb in (24, 48, 80)}
    for gb, plan in plans.items():
        assert plan.fits and plan.peak_bytes <= card(gb), (gb, plan.summary())
    order = memory.OFFLOADS
    assert order.index(plans[80].offload) <= order.index(plans[48].offload) <= order.index(plans[24].offload)
    assert plans[80].offload == "none"
    if variant == "2.2-ti2v-5b":
        assert plans[24].offload == "none"  # the 5B model fits a 24 GB card whole


def test_wan_tokens_and_batch():
    spec = wan_model_spec("2.1-i2v", 480, 832, 81)
    assert spec.latent_frames == 21 and spec.tokens() == 21 * 30 * 52  # video tokens only
    assert spec.cfg_batch == 1  # the two guided passes run one after another
    ti2v = wan_model_spec("2.2-ti2v-5b", 704, 1280, 121)
    assert ti2v.tokens() == 31 * 22 * 40 and ti2v.latent_channels == 48 and ti2v.spatial == 16


def test_a14b_keeps_both_experts_only_without_offload():
    spec = wan_model_spec("2.2-i2v-a14b", 480, 832, 81)
    none = memory.phase_peaks(spec, "bf16", "none", False)
    model = memory.phase_peaks(spec, "bf16", "model", False)
    assert none["denoise"] - model["denoise"] == WAN_PARAMS["transformer_2.2-i2v-a14b"] * 2


def test_fp8_needs_compute_capability_8_9_and_is_picked_when_ram_is_short():
    spec = wan_model_spec("2.1-i2v", 480, 832, 81)
    ram32 = 30 * GiB  # a 32 GB machine: 30.5 GiB of bf16 14B weights cannot be offloaded to it
    ada = plan_memory(card(24), spec, compute_capability=(8, 9), host_free_bytes=ram32)
    assert ada.fp8 and ada.fits and "fp8" in ada.summary()
    ampere = plan_memory(card(24), spec, compute_capability=(8, 0), host_free_bytes=ram32)
    assert not ampere.fp8 and any("compute capability 8.9+" in r and "8.0" in r for r in ampere.reasons)
    roomy = plan_memory(card(24), spec, compute_capability=(8, 9), host_free_bytes=120 * GiB)
    assert not roomy.fp8 and roomy.offload == "group"  # lossless first when the RAM holds the weights
    assert roomy.as_dict()["host_gib"] > 30
    cpu = plan_memory(None, spec, device="cpu", compute_capability=None)
    assert not cpu.fp8 and cpu.offload == "none"


def test_fp8_layerwise_casting_on_a_tiny_pipeline(wan21_ckpt):
    torch = pytest.importorskip("torch")
    from backend.runtime import placement

    from .conftest import load

    pipe = load(wan21_ckpt)
    plan = memory.MemoryPlan("cpu", "fp32", "none", False, False, 0, fp8=True)
    placement.apply_plan(pipe, plan)
    block = pipe.transformer.blocks[0]
    assert block.attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert pipe.transformer.patch_embedding.weight.dtype == torch.float32  # skipped by diffusers' patterns
    from .test_pipeline import run

    out = run(pipe, output_type="latent", num_inference_steps=2)
    assert torch.isfinite(out).all()
