"""Mode `animateanything`: the paper's two stages with trained AnimateAnything weights.

1. Load the checkpoint folder (`spec.animateanything_model`, written by
   `AnimateAnythingPipeline.save_pretrained`) on the CPU; its base CogVideoX I2V is the folder's
   reference, or `spec.model` when set. Everything missing is listed in one `missing_model` failure.
2. Memory plan (`backend.runtime.memory.plan_memory`, as the guided mode): dtype, offload and VAE
   tiling from the free memory or the job's choice; the stage-1 models and the small stage-2 parts
   are counted with what stays on the device. The pipeline is placed by `runtime.placement.apply_plan`
   (group offload streams the transformer blocks and keeps the AnimateAnything parts whole on the
   device, `AnimateAnythingPipeline.enable_group_offload`).
3. Stage 1: the learned FGM + CRM when the checkpoint has them, fed the drags as screen tracks
   (`model_tracks`: the job's frame-0 object-space tracks converted by
   blender_animate.track_space.screen_tracks, the convention the model is trained on); otherwise
   (or when the job has a reference video, which the learned stage 1 does not take) the analytic
   unified flow of the `preview` mode (`blender_animate.flow.unified_flow`, plus the reference
   video's DIS flow), with a warning saying so.
4. Prompt embeddings through the runtime's cache (`backend.runtime.prompts.prompt_embeddings`):
   the T5 encoder is loaded only for a prompt never seen before.
5. Stage 2: flow encoder + fusion block + frequency-stabilised attention on CogVideoX I2V.
Progress: stages "load", "flow" (stage 1 steps), "video" (stage 2 steps), from the pipeline's
`callback_on_step_end`; a cancel raises from it, so nothing is decoded after it. GPU memory is
released on every exit path. No weights are published for this model (docs/animateanything.md).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np

from ..context import JobContext
from ..errors import JobFailure
from . import ModeResult

NO_WEIGHTS_HINT = (
    "The AnimateAnything authors published no weights: train them (docs/animateanything.md) and set the "
    "folder as the AnimateAnything model in the add-on preferences, or use the 'guided' mode, which runs "
    "the public CogVideoX weights."
)
MAX_FLOW_STEPS = 25


def generate(ctx: JobContext) -> ModeResult:
    spec, cond = ctx.spec, ctx.cond
    F, H, W = spec.num_frames, spec.height, spec.width

    # 1. Checkpoint folder.
    if not spec.animateanything_model:
        raise JobFailure(
            "missing_model", "no AnimateAnything checkpoint is set for this job", NO_WEIGHTS_HINT
        )
    folder = Path(os.path.expanduser(spec.animateanything_model))
    if not folder.is_dir():
        raise JobFailure(
            "missing_model", f"the AnimateAnything checkpoint folder {folder} does not exist", NO_WEIGHTS_HINT
        )

    from ..runtime.checkpoints import Checkpoint, count_parameters, offline_env
    from ..runtime.devices import free_memory, pick_dtype, resolve_device, torch_dtype
    from ..runtime.memory import plan_memory
    from ..runtime.placement import apply_plan
    from ..runtime.prompts import cached_prompt_path, prompt_embeddings

    offline_env(spec.allow_download)
    import torch

    from ..animateanything.pipeline import AnimateAnythingPipeline, IncompleteCheckpointError

    device = resolve_device(ctx.requested_device)
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    dtype = pick_dtype(device, spec.dtype, bf16)

    ctx.progress("load", 0, 1, "loading the AnimateAnything checkpoint")
    try:
        pipe = AnimateAnythingPipeline.from_pretrained(
            folder,
            base_model=spec.model or None,
            torch_dtype=torch_dtype(dtype),
            load_text_encoder=False,
            local_files_only=not spec.allow_download,
        )
    except IncompleteCheckpointError as exc:
        raise JobFailure(
            "missing_model",
            str(exc),
            "Copy the missing parts into the folder (save_pretrained writes all of them), or point the "
            "CogVideoX model in the preferences at the base checkpoint this one was trained on.",
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    _check_size(pipe.transformer.config, pipe.vae.config, F, H, W)

    # 2. Memory plan (the pipeline is still on the CPU).
    max_len = pipe.transformer.config.max_text_seq_length
    ckpt = Checkpoint(pipe.base_model or str(folder), Path(pipe.base_path))
    prompts = [spec.prompt, spec.negative_prompt]
    cached = all(cached_prompt_path(ckpt, p, max_len, None).is_file() for p in prompts)
    text_params = count_parameters(ckpt, "text_encoder")
    model_spec = memory_spec(pipe, F, H, W, spec.guidance_scale > 1.0, not cached, text_params)
    plan = plan_memory(
        free_memory(device),
        model_spec,
        device=device,
        dtype=dtype,
        offload=spec.offload,
        vae_tiling=spec.vae_tiling,
        bf16_supported=bf16,
    )
    if not plan.fits:
        ctx.warn(plan.reasons[-1])
    ctx.progress("load", 1, 1, f"checkpoint loaded; {plan.summary()}")

    # 3. Stage 1 choice.
    info: dict = {"base_model": pipe.base_model or str(folder), "dtype": plan.dtype, "device": device}
    flow = None
    if not pipe.has_learned_stage1 or spec.reference_video:
        why = (
            "the checkpoint has no learned stage 1 (" + ", ".join(pipe.missing_stage1()) + ")"
            if not pipe.has_learned_stage1
            else "the learned stage 1 takes no reference video"
        )
        ctx.warn(f"stage 1 uses the analytic unified flow of the preview mode: {why}")
        flow = _analytic_flow(ctx)
        info["stage1"] = "analytic unified flow"
    else:
        info["stage1"] = "FGM + CRM"

    tracks, track_visible = model_tracks(ctx)

    def on_step_end(p, i, _t, kwargs):
        ctx.progress(p.stage, i + 1, p.num_timesteps)  # raises on a cancel: nothing decoded after it
        return kwargs

    td = torch_dtype(plan.dtype)
    try:
        # 4. Prompt embeddings (cached; T5 only for new prompts, on the device when whole models fit).
        text_device = device if plan.offload in ("none", "model") else "cpu"
        embeds, _ = prompt_embeddings(ckpt, prompts, max_len, dtype=plan.dtype, device=text_device)
        ctx.check_cancel()

        # 5. Both stages, placed by the plan.
        apply_plan(pipe, plan)
        out = pipe(
            ctx.reference,
            height=H,
            width=W,
            num_frames=F,
            flow=flow,
            c2w=cond.c2w,
            K=cond.K,
            tracks=tracks,
            track_visible=track_visible,
            flow_steps=min(MAX_FLOW_STEPS, spec.steps),
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance_scale,
            generator=torch.Generator().manual_seed(int(spec.seed)),
            prompt_embeds=embeds[spec.prompt].to(plan.device, td),
            negative_prompt_embeds=embeds[spec.negative_prompt].to(plan.device, td),
            callback_on_step_end=on_step_end,
            max_sequence_length=max_len,
        )
    except torch.OutOfMemoryError as exc:
        raise JobFailure(
            "out_of_memory",
            f"the GPU ran out of memory with {plan.summary()}: {exc}".strip(),
            "Set offload to 'group' or 'sequential' and VAE tiling on in the add-on preferences, or lower "
            "the resolution; close other programs that use the GPU.",
        ) from exc
    finally:
        pipe.maybe_free_model_hooks()
        del pipe
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    info["steps"] = {"flow": 0 if flow is not None else min(MAX_FLOW_STEPS, spec.steps), "video": spec.steps}
    info["memory_plan"] = plan.as_dict()
    return ModeResult(out.frames, out.flow.astype(np.float32), info)


def model_tracks(ctx: JobContext) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The job's drags as the learned stage 1 takes them: screen tracks (P, F, 2) float32 pixels of
    each frame's image and visibility (P, F) bool (in front of camera f and inside the image), or
    (None, None) without drags. conditions.npz holds job tracks (frame-0 object space); the model was
    trained on screen tracks (backend/training/data.py): blender_animate.track_space.screen_tracks
    converts them with the job's depth (or the fallback plane) and cameras, so a pin under a moving
    camera stays on its scene point, as in the preview."""
    from blender_animate.track_space import screen_tracks

    cond, spec = ctx.cond, ctx.spec
    if not len(cond.tracks):
        return None, None
    return screen_tracks(
        cond.tracks,
        ctx.depth,
        cond.K,
        cond.c2w,
        fallback_depth=spec.fallback_depth,
        height=spec.height,
        width=spec.width,
    )


def memory_spec(pipe, F: int, H: int, W: int, guidance: bool, text_encoder_needed: bool, text_params):
    """The planner's `ModelSpec` for a CPU-loaded AnimateAnythingPipeline, from its real parameter
    counts. The planner knows a transformer, a VAE and a text encoder; the stage-1 models and the
    small stage-2 parts stay whole on the device under every offload but sequential (group offload
    excludes them, see `AnimateAnythingPipeline._exclude_from_group_offload`), as the VAE does, so
    they are counted with it (under model offload that overestimates: stage 1 is offloaded then)."""
    import torch

    from ..animateanything.checkpoint import STAGE1
    from ..runtime.memory import ModelSpec

    def count(name):
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):  # absent, or a scheduler
            return 0
        return sum(t.numel() for t in module.state_dict().values())

    resident = sum(count(n) for n in ("flow_encoder", "flow_fusion", "frequency_stabilizer", *STAGE1))
    sizes = {"transformer_params": count("transformer"), "vae_params": count("vae") + resident}
    if text_params is not None:
        sizes["text_encoder_params"] = text_params
    return ModelSpec.from_configs(
        dict(pipe.transformer.config), H, W, F, dict(pipe.vae.config), guidance=guidance,
        encode_prior=False, text_encoder_needed=text_encoder_needed, **sizes,
    )  # fmt: skip


def _check_size(tcfg, vcfg, F: int, H: int, W: int) -> None:
    s = 2 ** (len(vcfg.block_out_channels) - 1)
    if tcfg.use_learned_positional_embeddings and (H != tcfg.sample_height * s or W != tcfg.sample_width * s):
        raise JobFailure(
            "invalid_job",
            f"this checkpoint generates only {tcfg.sample_width * s}x{tcfg.sample_height * s} videos, "
            f"the job asks for {W}x{H}",
            f"Set the resolution to {tcfg.sample_width * s}x{tcfg.sample_height * s} in the Animate Anything "
            "panel.",
        )


def _analytic_flow(ctx: JobContext) -> np.ndarray:
    """The preview mode's stage 1: camera flow from depth + drags (+ the reference video's flow)."""
    from .preview import preview_flow

    return preview_flow(ctx).flow.astype(np.float32, copy=False)
