"""Mode `guided`: the preview video as the layout prior of a public CogVideoX image-to-video model.

1. Checkpoint: resolve the folder or hub id (offline unless the job allows downloads), check it is
   complete and that it can generate the job's size and frame count, all before loading weights.
2. Layout prior: run mode `preview` (unified flow + forward splatting of the reference image).
3. Memory plan: device, dtype, offloading and VAE tiling from the free memory (or the job's choice).
4. Prompt embeddings: from the cache, or T5 loaded alone, used, freed (and the result cached).
5. Pipeline: transformer, VAE and scheduler from safetensors, placed by the plan.
6. Denoise from the prior noised to `strength` (and flow-warped noise with `noise_warp`), a
   `progress` event per step; a cancel raises from the step callback, so no VAE decode follows.
7. Frames as uint8 with frame 0 = the reference; the preview's flow is returned as the flow.
GPU memory is released on every exit path (done, error, cancel).
"""

from __future__ import annotations

import gc
import time

import numpy as np

from ..context import JobContext
from ..errors import JobFailure
from . import ModeResult

REQUIREMENTS_HINT = (
    "Create the generator environment (Preferences > Add-ons > Animate Anything > Create environment) or "
    "`pip install -r backend/requirements-generator.txt` into the Python set in the preferences."
)


def _imports():
    try:
        import diffusers  # noqa: F401
        import torch
        import transformers  # noqa: F401
    except ModuleNotFoundError as exc:
        raise JobFailure(
            "missing_dependency",
            f"mode guided needs torch, diffusers and transformers; {exc.name!r} is not installed in "
            "this Python",
            REQUIREMENTS_HINT,
        ) from exc
    return torch


def generate(ctx: JobContext) -> ModeResult:
    from ..guided import load
    from ..guided.limits import checkpoint_limits
    from ..runtime import checkpoints, devices, memory, placement, text
    from ..runtime import prompts as prompt_cache

    spec = ctx.spec
    F, H, W = spec.num_frames, spec.height, spec.width
    checkpoints.offline_env(spec.allow_download)
    t0 = time.perf_counter()
    timings = {}

    # 1. Checkpoint, and what it can generate (no torch import, no weights yet).
    ctx.progress("load", 0, 4, "looking for the CogVideoX checkpoint")
    ckpt = checkpoints.resolve_checkpoint(spec.model, allow_download=spec.allow_download)
    checkpoints.require_parts(ckpt, checkpoints.PIPELINE_COMPONENTS)
    transformer_config = ckpt.config("transformer")
    limits = checkpoint_limits(transformer_config, ckpt.config("vae"))
    try:
        for message in limits.check(H, W, F):
            ctx.warn(message)
    except ValueError as exc:
        raise JobFailure(
            "invalid_job",
            f"{ckpt.source}: {exc}",
            "Set the scene's output size and frame range to one the checkpoint can do (CogVideoX-5b-I2V: "
            "720x480, 49 frames; CogVideoX1.5-5B-I2V: e.g. 1360x768, 81 frames) and export the job again.",
        ) from exc
    # Prompts: from the cache, else the text encoder must be there too.
    guidance = spec.guidance_scale > 1.0
    max_len = int(transformer_config.get("max_text_seq_length", 226))
    prompts = [spec.prompt] + ([spec.negative_prompt] if guidance else [])
    cached = all(prompt_cache.cached_prompt_path(ckpt, p, max_len, None).is_file() for p in prompts)
    if not cached:
        checkpoints.require_parts(ckpt, checkpoints.TEXT_COMPONENTS)
        text.require_tokenizer_backend(ckpt)  # spiece.model needs sentencepiece: say so now
    strength = float(spec.strength)
    if strength < 1.0 and int(spec.steps * strength) < 1:
        raise JobFailure(
            "invalid_job",
            f"strength {strength} with {spec.steps} steps leaves no denoising step",
            f"Raise the strength to at least {1.0 / spec.steps:.2f} or use more steps.",
        )

    torch = _imports()

    # 2. Layout prior and flow from the preview mode.
    from . import preview

    prior = preview.generate(ctx)
    timings["preview"] = time.perf_counter() - t0
    ctx.check_cancel()

    # 3. Memory plan.
    device = devices.resolve_device(ctx.requested_device)
    bf16 = device != "cuda" or torch.cuda.is_bf16_supported()
    # Parameter counts from the safetensors headers: the plan fits the checkpoint actually used.
    sizes = {
        f"{name}_params": n
        for name in ("transformer", "vae", "text_encoder")
        if (n := checkpoints.count_parameters(ckpt, name)) is not None
    }
    model_spec = memory.ModelSpec.from_configs(
        transformer_config,
        H,
        W,
        F,
        ckpt.config("vae"),
        guidance=guidance,
        encode_prior=strength < 1.0,
        text_encoder_needed=not cached,
        **sizes,
    )
    plan = memory.plan_memory(
        devices.free_memory(device),
        model_spec,
        device=device,
        dtype=spec.dtype,
        offload=spec.offload,
        vae_tiling=spec.vae_tiling,
        bf16_supported=bf16,
    )
    if not plan.fits:
        ctx.warn(plan.reasons[-1])
    ctx.progress("load", 1, 4, plan.summary())

    pipe = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        # 4. Prompt embeddings (the text encoder only when a prompt is not cached).
        ctx.progress("load", 2, 4, "prompt embeddings" + (" (cached)" if cached else ": loading T5"))
        t = time.perf_counter()
        # T5-XXL runs on the accelerator when the plan keeps whole models there, else on the CPU.
        text_device = device if plan.offload in ("none", "model") else "cpu"
        embeds, loaded_t5 = prompt_cache.prompt_embeddings(
            ckpt, prompts, max_len, dtype=plan.dtype, device=text_device
        )
        timings["text_encoder"] = time.perf_counter() - t
        ctx.check_cancel()

        # 5. Transformer, VAE, scheduler.
        ctx.progress("load", 3, 4, f"loading {ckpt.source}")
        t = time.perf_counter()
        pipe = load.load_pipeline(ckpt, dtype=plan.dtype)
        pipe.set_progress_bar_config(disable=True)
        placement.apply_plan(pipe, plan)
        timings["load"] = time.perf_counter() - t
        ctx.progress("load", 4, 4, "model ready")

        # 6. Denoise with a progress event per step; a cancel raises in the callback.
        dtype = devices.torch_dtype(plan.dtype)
        total = int(spec.steps * strength) if strength < 1.0 else spec.steps

        def on_step(_pipe, i, _t, kwargs):
            ctx.progress("denoise", i + 1, total, f"denoising step {i + 1} of {total}")
            return kwargs

        t = time.perf_counter()
        from PIL import Image

        out = pipe(
            image=Image.fromarray(ctx.reference),
            prompt_embeds=embeds[spec.prompt].to(dtype),
            negative_prompt_embeds=embeds[spec.negative_prompt].to(dtype) if guidance else None,
            height=H,
            width=W,
            num_frames=F,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(spec.seed),
            video=prior.frames if strength < 1.0 else None,
            strength=strength,
            flow=prior.flow if spec.noise_warp else None,
            noise_warp=bool(spec.noise_warp),
            keep_first_frame=True,
            output_type="np",
            callback_on_step_end=on_step,
            max_sequence_length=max_len,
        )
        timings["denoise_and_decode"] = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
        frames = np.clip(np.round(out.frames[0] * 255.0), 0, 255).astype(np.uint8)
        del out
    except torch.OutOfMemoryError as exc:
        raise JobFailure(
            "out_of_memory",
            f"the GPU ran out of memory with {plan.summary()}: {exc}".strip(),
            "Set offload to 'sequential' (slowest, smallest) and VAE tiling on in the add-on preferences, "
            "or lower the resolution; close other programs that use the GPU.",
        ) from exc
    finally:
        # Offload hooks, weights and activations go on every path, cancel included.
        if pipe is not None:
            pipe.maybe_free_model_hooks()
        del pipe
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    info = {
        "model": ckpt.source,
        "model_path": str(ckpt.path),
        "cogvideox_version": limits.version,
        "strength": strength,
        "noise_warp": bool(spec.noise_warp),
        "denoising_steps": total,
        "prompt_embeddings": "encoded" if loaded_t5 else "cached",
        "memory_plan": plan.as_dict(),
        "peak_gpu_gib": None if peak is None else round(peak / 2**30, 2),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "preview": prior.info,
    }
    return ModeResult(frames=frames, flow=prior.flow, info=info)
