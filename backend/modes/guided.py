"""Mode `guided`: the preview video steers a public image-to-video model (CogVideoX or Wan 2.x).

1. Checkpoint of the job's `model_family` ("cogvideox": backend/guided/, "wan": backend/wan/):
   resolve the folder or hub id (offline unless the job allows downloads), check it is complete and
   that it can generate the job's size and frame count, all before loading weights.
2. Guidance settings (backend/runtime/guidance.py): "ttm" Time-to-Move (default; `tweak_index`,
   `tstrong_index`, -1 = the family's defaults), "sdedit" (`strength`), "none", or "tracks"
   (Wan-Move point-track conditioning, Wan 2.1 I2V weights only).
3. Layout prior: mode `preview` (unified flow + forward splatting), and Time-to-Move's mask: the
   pixels the forward splat really covers (not hole filling).
4. Memory plan: device, dtype, fp8 (Wan), offloading and VAE tiling from the free memory.
5. Prompt embeddings: from the cache, or the text encoder loaded alone, used, freed.
6. Pipeline from safetensors, placed by the plan; an optional LoRA (`lora`, `lora_scale`).
7. Denoise, a `progress` event per step; a cancel raises from the step callback (no VAE decode).
8. Frames as uint8 with frame 0 = the reference; the preview's flow is returned as the flow.
GPU memory is released on every exit path (done, error, cancel).
Inside a context-parallel rank (backend/cp_rank.py) the transformer(s) are split across the ranks
after step 6 (`info.context_parallel`: kind, ranks, backend, modules; None in one process).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np

from ..context import JobContext
from ..errors import JobFailure
from . import ModeResult

REQUIREMENTS_HINT = (
    "Create the generator environment (Preferences > Add-ons > Animate Anything > Create environment) or "
    "`pip install -r backend/requirements-generator.txt` into the Python set in the preferences."
)
FAMILIES = ("cogvideox", "wan")
WAN_DEFAULT_MODEL = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
SIZE_HINT = {
    "cogvideox": "CogVideoX-5b-I2V: 720x480, 49 frames; CogVideoX1.5-5B-I2V: e.g. 1360x768, 81 frames",
    "wan": "Wan 2.1 / 2.2 I2V: 832x480 or 1280x720, 81 frames at 16 fps; Wan2.2-TI2V-5B: 1280x704, 121 "
    "frames at 24 fps",
}


def _field(spec, name: str, default):
    """A job field, or its default when this job.json predates it."""
    return getattr(spec, name, default)


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


@dataclass
class Guidance:
    """The job's guidance, checked: method, first step index, Time-to-Move's strong index, strength."""

    method: str
    start: int
    strong: int
    strength: float

    @property
    def needs_prior(self) -> bool:
        return self.method in ("ttm", "sdedit")


def guidance_settings(spec, family: str) -> Guidance:
    from ..runtime.guidance import GUIDANCE_METHODS, ttm_indices

    method = _field(spec, "guidance", "ttm")
    steps, strength = int(spec.steps), float(spec.strength)
    if method not in GUIDANCE_METHODS:
        raise JobFailure(
            "invalid_job", f"guidance must be one of {', '.join(GUIDANCE_METHODS)}, got {method!r}"
        )
    if method == "tracks" and family != "wan":
        raise JobFailure(
            "invalid_job",
            "guidance 'tracks' (Wan-Move) needs model_family 'wan' with Wan-Move weights",
            "Set the model family to Wan and the model to Wan-Move-14B-480P, or pick Time-to-Move guidance.",
        )
    if method == "ttm":
        try:
            tweak, strong = ttm_indices(
                family, steps, int(_field(spec, "tweak_index", -1)), int(_field(spec, "tstrong_index", -1))
            )
        except ValueError as exc:
            raise JobFailure("invalid_job", str(exc), "Pick indices within the step count.") from exc
        return Guidance("ttm", tweak, strong, 1.0)
    if method == "sdedit":
        if strength >= 1.0:
            return Guidance("none", 0, 0, 1.0)
        if int(steps * strength) < 1:
            raise JobFailure(
                "invalid_job",
                f"strength {strength} with {steps} steps leaves no denoising step",
                f"Raise the strength to at least {1.0 / steps:.2f} or use more steps.",
            )
        start = steps - int(steps * strength)
        return Guidance("sdedit", start, start, strength)
    return Guidance(method, 0, 0, 1.0)


def _size_check(ctx: JobContext, ckpt, limits, family: str, *args) -> None:
    try:
        for message in limits.check(*args):
            ctx.warn(message)
    except ValueError as exc:
        raise JobFailure(
            "invalid_job",
            f"{ckpt.source}: {exc}",
            f"Set the scene's output size and frame range to one the checkpoint can do ({SIZE_HINT[family]}) "
            "and export the job again.",
        ) from exc


def generate(ctx: JobContext) -> ModeResult:
    from ..runtime import checkpoints
    from ..runtime import prompts as prompt_cache

    spec = ctx.spec
    family = _field(spec, "model_family", "cogvideox")
    if family not in FAMILIES:
        raise JobFailure("invalid_job", f"model_family must be one of {', '.join(FAMILIES)}, got {family!r}")
    F, H, W = spec.num_frames, spec.height, spec.width
    checkpoints.offline_env(spec.allow_download)
    t0 = time.perf_counter()
    timings = {}

    # 1. Checkpoint, and what it can generate (no torch import, no weights yet).
    ctx.progress("load", 0, 4, f"looking for the {'Wan' if family == 'wan' else 'CogVideoX'} checkpoint")
    model = spec.model or (WAN_DEFAULT_MODEL if family == "wan" else "")
    ckpt = checkpoints.resolve_checkpoint(model, allow_download=spec.allow_download)
    transformer_config = ckpt.config("transformer")
    if family == "wan":
        from ..wan import limits as wan_limits
        from ..wan import load as wan_load

        parts = wan_load.components(ckpt)
        checkpoints.require_parts(ckpt, tuple(p for p in parts if p != "image_encoder"))
        limits = wan_limits.checkpoint_limits(
            transformer_config, ckpt.config("vae"), wan_load.model_index(ckpt)
        )
        _size_check(ctx, ckpt, limits, family, H, W, F, spec.fps)
        max_len, variant = 512, limits.variant
        if _field(spec, "transformer_file", ""):
            wan_load.check_single_file(spec.transformer_file)
    else:
        from ..guided.limits import checkpoint_limits

        checkpoints.require_parts(ckpt, checkpoints.PIPELINE_COMPONENTS)
        limits = checkpoint_limits(transformer_config, ckpt.config("vae"))
        _size_check(ctx, ckpt, limits, family, H, W, F)
        max_len, variant = int(transformer_config.get("max_text_seq_length", 226)), limits.version
    guide = guidance_settings(spec, family)
    if guide.method == "tracks" and variant != "2.1-i2v":
        raise JobFailure(
            "invalid_job",
            f"Wan-Move track conditioning needs Wan 2.1 I2V weights (Wan-Move-14B-480P); {ckpt.source} "
            f"is Wan {variant}",
            "Point the model at Wan-Move-14B-480P (or its transformer file over Wan2.1-I2V-14B-480P).",
        )
    # Prompts: from the cache, else the text encoder must be there too.
    cfg = spec.guidance_scale > 1.0
    prompts = [spec.prompt] + ([spec.negative_prompt] if cfg else [])
    cached = all(prompt_cache.cached_prompt_path(ckpt, p, max_len, None).is_file() for p in prompts)
    if not cached:
        from ..runtime import text

        checkpoints.require_parts(ckpt, checkpoints.TEXT_COMPONENTS)
        text.require_tokenizer_backend(ckpt)  # spiece.model needs sentencepiece: say so now
    torch = _imports()

    # 2-3. Layout prior, flow and Time-to-Move's mask from the preview mode.
    from ..runtime.guidance import coverage_mask
    from . import preview

    prior = preview.generate(ctx).materialize(ctx)
    mask = coverage_mask(prior.flow) if guide.method == "ttm" else None
    timings["preview"] = time.perf_counter() - t0
    ctx.check_cancel()

    # 4. Memory plan.
    plan = _memory_plan(ctx, torch, ckpt, family, variant, transformer_config, guide, cfg, cached)
    _check_parallel_plan(plan)
    ctx.progress("load", 1, 4, plan.summary())

    pipe, peak, device, parallel = None, None, plan.device, None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        # 5. Prompt embeddings (the text encoder only when a prompt is not cached).
        ctx.progress(
            "load", 2, 4, "prompt embeddings" + (" (cached)" if cached else ": loading the text encoder")
        )
        t = time.perf_counter()
        text_device = device if plan.offload in ("none", "model") else "cpu"
        embeds, loaded_te = prompt_cache.prompt_embeddings(
            ckpt, prompts, max_len, dtype=plan.dtype, device=text_device, masked=family == "wan"
        )
        timings["text_encoder"] = time.perf_counter() - t
        ctx.check_cancel()

        # 6. Transformer(s), VAE, scheduler (+ CLIP for Wan 2.1), placed; the LoRA.
        ctx.progress("load", 3, 4, f"loading {ckpt.source}")
        t = time.perf_counter()
        if family == "wan":
            pipe = wan_load.load_pipeline(
                ckpt, dtype=plan.dtype, transformer_file=_field(spec, "transformer_file", "")
            )
        else:
            from ..guided import load

            pipe = load.load_pipeline(ckpt, dtype=plan.dtype)
        pipe.set_progress_bar_config(disable=True)
        lora = _field(spec, "lora", "")
        if lora:
            from ..runtime.lora import load_lora

            load_lora(pipe, lora, float(_field(spec, "lora_scale", 1.0)))
        from ..runtime import placement

        placement.apply_plan(pipe, plan)
        parallel = _context_parallel(pipe, plan, H, W, F)
        timings["load"] = time.perf_counter() - t
        ctx.progress("load", 4, 4, "model ready")

        # 7. Denoise with a progress event per step; a cancel raises in the callback.
        from ..runtime.devices import torch_dtype

        dtype = torch_dtype(plan.dtype)
        total = spec.steps - guide.start

        def on_step(_pipe, i, _t, kwargs):
            ctx.progress("denoise", i + 1, total, f"denoising step {i + 1} of {total}")
            return kwargs

        from PIL import Image

        common = dict(
            image=Image.fromarray(ctx.reference),
            prompt_embeds=embeds[spec.prompt].to(dtype),
            negative_prompt_embeds=embeds[spec.negative_prompt].to(dtype) if cfg else None,
            height=H,
            width=W,
            num_frames=F,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            generator=torch.Generator(device="cpu").manual_seed(spec.seed),
            video=prior.frames if guide.needs_prior else None,
            strength=guide.strength,
            ttm_mask=mask,
            tweak_index=guide.start,
            tstrong_index=guide.strong,
            flow=prior.flow if spec.noise_warp else None,
            noise_warp=bool(spec.noise_warp),
            noise_degradation=float(_field(spec, "noise_degradation", 0.0)),
            keep_first_frame=True,
            output_type="np",
            callback_on_step_end=on_step,
            max_sequence_length=max_len,
        )
        if family == "wan":
            common["guidance"] = guide.method if guide.method != "tracks" else "none"
            if guide.method == "tracks":
                common["tracks"], common["track_visible"] = _wan_tracks(ctx, prior.flow, F)
        else:
            common["guidance"] = guide.method
        t = time.perf_counter()
        out = pipe(**common)
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
        "model_family": family,
        "variant": variant,
        "guidance": guide.method,
        "strength": guide.strength,
        "tweak_index": guide.start if guide.method == "ttm" else None,
        "tstrong_index": guide.strong if guide.method == "ttm" else None,
        "noise_warp": bool(spec.noise_warp),
        "lora": _field(spec, "lora", "") or None,
        "denoising_steps": total,
        "prompt_embeddings": "encoded" if loaded_te else "cached",
        "memory_plan": plan.as_dict(),
        "context_parallel": parallel,
        "peak_gpu_gib": None if peak is None else round(peak / 2**30, 2),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "preview": prior.info,
    }
    if family == "cogvideox":
        info["cogvideox_version"] = variant
    return ModeResult(frames=frames, flow=prior.flow, info=info)


def _context_parallel(pipe, plan, height: int, width: int, num_frames: int) -> dict | None:
    """Inside a torchrun rank (backend/cp_rank.py: a process group of world size > 1), split the
    denoiser(s) across the ranks (Ulysses); returns what result.json's info records, else None."""
    from ..runtime import context_parallel as cp

    degree = cp.active_degree()
    if degree <= 1:
        return None
    cp.check_tokens(cp.wan_tokens(pipe, height, width, num_frames), degree)
    split = []
    for name in ("transformer", "transformer_2"):
        module = getattr(pipe, name, None)
        if module is not None:
            cp.apply_context_parallel(module, degree)
            split.append(name)
    import torch.distributed as dist

    return {"kind": "ulysses", "ranks": degree, "backend": str(dist.get_backend()), "modules": split}


def _check_parallel_plan(plan) -> None:
    """Inside context-parallel ranks, before any weights load: a plan that does not hold the whole
    model on each GPU is refused, or (ranks chosen automatically) handed back to one process."""
    import os

    from ..runtime import context_parallel as cp

    if cp.active_degree() > 1:
        cp.check_plan(plan, automatic=os.environ.get(cp.AUTO_ENV) == "1")


def _memory_plan(ctx, torch, ckpt, family, variant, transformer_config, guide, cfg, cached):
    from ..runtime import checkpoints, devices, memory

    spec = ctx.spec
    F, H, W = spec.num_frames, spec.height, spec.width
    device = devices.resolve_device(ctx.requested_device)
    bf16 = device != "cuda" or torch.cuda.is_bf16_supported()
    cc = torch.cuda.get_device_capability() if device == "cuda" else None
    # Parameter counts from the safetensors headers: the plan fits the checkpoint actually used.
    counts = {n: checkpoints.count_parameters(ckpt, n) for n in ("transformer", "vae", "text_encoder")}
    if family == "wan":
        from ..runtime.wan_memory import wan_model_spec

        model_spec = wan_model_spec(
            variant,
            H,
            W,
            F,
            guidance=cfg,
            encode_prior=guide.needs_prior,
            text_encoder_needed=not cached,
            transformer_config=transformer_config,
            transformer_params=counts["transformer"],
        )
        if counts["vae"] is not None:
            from dataclasses import replace

            model_spec = replace(model_spec, vae_params=counts["vae"])
    else:
        sizes = {f"{n}_params": c for n, c in counts.items() if c is not None}
        model_spec = memory.ModelSpec.from_configs(
            transformer_config,
            H,
            W,
            F,
            ckpt.config("vae"),
            guidance=cfg,
            encode_prior=guide.needs_prior,
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
        compute_capability=cc,
        host_free_bytes=devices.host_free_memory() if device == "cuda" else None,
    )
    if not plan.fits:
        ctx.warn(plan.reasons[-1])
    return plan


def _wan_tracks(ctx, flow: np.ndarray, num_frames: int):
    """Wan-Move tracks of the job (backend/wan/tracks.py job_tracks), all screen tracks: the drags
    converted from frame-0 object space with the job's depth and cameras, then the camera grid
    carried by the preview's unified `flow` (F, H, W, 2); visible where the unified flow is valid
    and nothing nearer covers the point. The unified flow's depth is remade one frame at a time
    (the preview's stage 1 again, quietly: its warnings and progress were reported already)."""
    import dataclasses

    from ..wan.tracks import job_tracks
    from . import preview

    quiet = dataclasses.replace(ctx, events=None, warnings=[])
    plan = preview.flow_plan(quiet, reference=False)
    cond = ctx.cond
    return job_tracks(
        cond.tracks,
        flow,
        lambda f: preview.frame_flow(quiet, plan, f)[1],
        num_frames,
        K=cond.K,
        c2w=cond.c2w,
        depth=quiet.depth,
        fallback_depth=ctx.spec.fallback_depth,
    )
