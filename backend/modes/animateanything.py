"""Mode `animateanything`: the paper's two stages with trained AnimateAnything weights.

1. Load the checkpoint folder (`spec.animateanything_model`, written by
   `AnimateAnythingPipeline.save_pretrained`); its base CogVideoX I2V is the folder's reference, or
   `spec.model` when set. Everything missing is listed in one `missing_model` failure.
2. Prompt embeddings through the guided mode's cache (`backend.guided.loading.prompt_embeddings`):
   the T5 encoder is loaded only for a prompt never seen before.
3. Stage 1: the learned FGM + CRM when the checkpoint has them; otherwise (or when the job has a
   reference video, which the learned stage 1 does not take) the analytic unified flow of the
   `preview` mode (`blender_animate.flow.unified_flow`, plus the reference video's DIS flow), with a
   warning saying so.
4. Stage 2: flow encoder + fusion block + frequency-stabilised attention on CogVideoX I2V.
Progress: stages "load", "flow" (stage 1 steps), "video" (stage 2 steps); cancel between steps.
No weights are published for this model (see docs/animateanything.md for training).
"""

from __future__ import annotations

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

    from ..guided.loading import Checkpoint, offline_env, prompt_embeddings, torch_dtype
    from ..guided.memory import pick_dtype, resolve_device

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
    ctx.progress("load", 1, 1, "checkpoint loaded")

    # 2. Prompt embeddings (cached; T5 only for new prompts).
    max_len = pipe.transformer.config.max_text_seq_length
    ckpt = Checkpoint(pipe.base_model or str(folder), Path(pipe.base_path))
    embeds, _ = prompt_embeddings(
        ckpt, [spec.prompt, spec.negative_prompt], max_len, dtype=dtype, device=device
    )
    td = torch_dtype(dtype)
    prompt_embeds = embeds[spec.prompt].to(device, td)
    negative_embeds = embeds[spec.negative_prompt].to(device, td)

    # 3. Stage 1 choice.
    info: dict = {"base_model": pipe.base_model or str(folder), "dtype": dtype, "device": device}
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

    # 4. Both stages.
    _place(pipe, device, spec)
    generator = torch.Generator().manual_seed(int(spec.seed))
    visible = cond.track_visible if len(cond.tracks) else None
    out = pipe(
        ctx.reference,
        height=H,
        width=W,
        num_frames=F,
        flow=flow,
        c2w=cond.c2w,
        K=cond.K,
        tracks=cond.tracks if len(cond.tracks) else None,
        track_visible=visible,
        flow_steps=min(MAX_FLOW_STEPS, spec.steps),
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        generator=generator,
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        callback=lambda stage, step, total: ctx.progress(stage, step, total),
        max_sequence_length=max_len,
    )
    info["steps"] = {"flow": 0 if flow is not None else min(MAX_FLOW_STEPS, spec.steps), "video": spec.steps}
    return ModeResult(out.frames, out.flow.astype(np.float32), info)


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


def _place(pipe, device: str, spec) -> None:
    """Device placement: everything on the device on the CPU or with offload "none"; sequential
    offload for "sequential"; model offload otherwise ("auto", "model", "group"). VAE tiling when
    "on", or in "auto" off the CPU."""
    if device == "cpu" or spec.offload == "none":
        pipe.to(device)
    elif spec.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.enable_model_cpu_offload(device=device)
    if spec.vae_tiling == "on" or (spec.vae_tiling == "auto" and device != "cpu"):
        pipe.vae.enable_tiling()
