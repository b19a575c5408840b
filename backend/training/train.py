"""Train AnimateAnything.

    python -m backend.training.train --stage 2 --data DIR --base COGVIDEOX --output OUT


Stage 2 trains the flow encoder, the fusion block and the frequency weights on top of the frozen
CogVideoX I2V model (``losses.stage2_loss``). Stage 1 trains the Flow Generation Model and the
Camera Reference Model (``losses.stage1_loss``) with both VAEs frozen; it starts from an
AnimateAnything checkpoint that holds stage-1 parts (``--init``, e.g. made from SD1.5 with the recipe
in docs/animateanything.md).

The output folder is an AnimateAnything checkpoint (``AnimateAnythingPipeline.save_pretrained``: the
trained parts in safetensors, the CogVideoX base referenced), loadable by ``from_pretrained`` and by
the mode (``animateanything_model``), plus ``training_state.json`` and ``optimizer.safetensors`` for
``--resume`` and ``train_log.jsonl`` (one JSON line per optimizer step). Nothing is pickled.
Data format: backend/training/data.py and docs/animateanything.md ("Training data").

Several processes: `accelerate launch --multi_gpu --num_processes N -m backend.training.train ...`
(DDP for both stages; FSDP for stage 2 with accelerate_fsdp_stage2.yaml). Every rank checks at each
save that all ranks hold the same weights (`state.weights_digest`); the main process alone writes.
`--latent-cache` (stage 2) encodes each clip once (latent_cache.py) instead of at every step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .batches import TrainingSetupError
from .state import fsdp_note, full_weights, load_optimizer, save_optimizer, weights_digest, write_json

STATE_FILE = "training_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "train_log.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m backend.training.train", description="Train AnimateAnything (stage 1 or 2)."
    )
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument(
        "--data", required=True, help="folder of clip folders (docs/animateanything.md, Training data)"
    )
    p.add_argument(
        "--base", default="", help="CogVideoX I2V folder or hub id (default: the init checkpoint's base)"
    )
    p.add_argument("--output", required=True, help="checkpoint folder written (and read by --resume)")
    p.add_argument(
        "--init", default=None, help="AnimateAnything checkpoint to start from (required for stage 1)"
    )
    p.add_argument("--resume", action="store_true", help="continue from --output's saved state")
    p.add_argument("--sizes", choices=("real", "tiny"), default="real", help="sizes of new stage-2 parts")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps (counting resumed ones)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    p.add_argument("--gradient-checkpointing", action="store_true", help="stage 2: recompute DiT blocks")
    p.add_argument(
        "--vae-tiling", action="store_true", help="stage 2: encode clips with the tiled CogVideoX VAE"
    )
    p.add_argument("--flow-noise", type=float, default=0.2, help="stage 2: flow noise std (normalised units)")
    p.add_argument("--num-frames", type=int, default=49)
    p.add_argument(
        "--height", type=int, default=480, help="stage 2 video height (stage 1: the flow size of it)"
    )
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--max-stride", type=int, default=1, help="frame stride sampled in [1, max]")
    p.add_argument("--num-tracks", type=int, default=8, help="stage 1: sparse tracks per sample, [0, max]")
    p.add_argument(
        "--latent-cache", action="store_true", help="stage 2: encode each clip once (latent_cache.py)"
    )
    p.add_argument(
        "--latent-cache-dir", default=None, help="where the cache lives (default DATA/.latent_cache)"
    )
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-download", action="store_true", help="let the base come from the hub")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ..runtime.checkpoints import offline_env

    offline_env(args.allow_download)  # before diffusers / huggingface_hub are imported
    try:
        return train(args)
    except TrainingSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------- models


def _weight_dtype(mixed_precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def build_pipeline(args, init_dir: str | None):
    """The AnimateAnythingPipeline whose parts are trained, with its base recorded (fingerprints)."""
    import torch

    from ..animateanything.checkpoint import IncompleteCheckpointError
    from ..animateanything.pipeline import AnimateAnythingPipeline
    from ..errors import JobFailure
    from ..guided.load import load_pipeline
    from ..runtime.checkpoints import resolve_checkpoint

    if init_dir is not None:
        try:
            pipe = AnimateAnythingPipeline.from_pretrained(
                init_dir, base_model=args.base or None, local_files_only=not args.allow_download
            )
        except IncompleteCheckpointError as exc:
            raise TrainingSetupError(str(exc)) from exc
        source, base_path = pipe.base_model, pipe.base_path
        if source is None:  # the base was copied into the init folder
            source = base_path = str(init_dir)
    else:
        if args.stage == 1:
            raise TrainingSetupError(
                "stage 1 needs --init: an AnimateAnything checkpoint with flow_vae/, flow_generator/, "
                "camera_reference/, image_vae/ and flow_scheduler/ (make one from SD1.5 with the recipe in "
                "docs/animateanything.md and save_pretrained)"
            )
        try:
            ckpt = resolve_checkpoint(args.base, allow_download=args.allow_download)
            dtype = {"no": "fp32"}.get(args.mixed_precision, args.mixed_precision)
            base = load_pipeline(ckpt, dtype=dtype, with_text_encoder=True)
        except JobFailure as exc:
            raise TrainingSetupError(
                f"{exc.message}; pass --base FOLDER (diffusers layout) or --allow-download"
            ) from exc
        from ..animateanything import configs
        from ..animateanything.flow_encoder import FlowEncoder3D
        from ..animateanything.flow_fusion import FlowFusionBlock
        from ..animateanything.frequency_attention import FrequencyStabilizer

        sized = {
            n: getattr(configs, f"{args.sizes.upper()}_{n}")
            for n in ("FLOW_ENCODER", "FLOW_FUSION", "FREQUENCY_STABILIZER")
        }
        try:
            pipe = AnimateAnythingPipeline(
                tokenizer=base.tokenizer, text_encoder=base.text_encoder, vae=base.vae,
                transformer=base.transformer, scheduler=base.scheduler,
                flow_encoder=FlowEncoder3D(**sized["FLOW_ENCODER"]),
                flow_fusion=FlowFusionBlock(**sized["FLOW_FUSION"]),
                frequency_stabilizer=FrequencyStabilizer(**sized["FREQUENCY_STABILIZER"]),
            )  # fmt: skip
        except ValueError as exc:  # check_compatible: sizes do not fit the base transformer
            raise TrainingSetupError(
                f"--sizes {args.sizes} does not fit the base {args.base}: {exc}"
            ) from exc
        source, base_path = ckpt.source, str(ckpt.path)
    # Trained parts in float32 (autocast does the rest). Stage 2: the frozen CogVideoX base in the
    # mixed-precision dtype (it is referenced, never saved). Everything that is saved into the output
    # folder and not trained (stage-1 VAEs, the other stage's parts) keeps the dtype it was loaded in.
    from ..animateanything.checkpoint import BASE, TRAINED

    trained = TRAINED if args.stage == 2 else ("flow_generator", "camera_reference")
    casts = {name: torch.float32 for name in trained}
    if args.stage == 2:
        casts.update({name: _weight_dtype(args.mixed_precision) for name in BASE})
    for name, dtype in casts.items():
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module) and any(p.dtype != dtype for p in module.parameters()):
            module.to(dtype)
    pipe.set_base_model(source, base_path)  # fingerprints of the base as it is used
    return pipe


def set_trainable(pipe, stage: int, flow_noise: float) -> list:
    """Freeze what the paper freezes (losses.py's selection); return the trainable parameters."""
    import torch

    from .losses import set_stage1_trainable

    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
            module.eval()
    if stage == 2:
        pipe.stage2.flow_noise_std = float(flow_noise)
        pipe.stage2.set_trainable()
        pipe.stage2.train()
        pipe.transformer.eval()  # frozen, no dropout; the trained parts train
        return list(pipe.stage2.trainable_parameters())
    frozen = [m for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)
              and n not in ("flow_generator", "camera_reference")]  # fmt: skip
    set_stage1_trainable(pipe.flow_generator, pipe.camera_reference, *frozen)
    pipe.flow_generator.train()
    pipe.camera_reference.train()
    return [*pipe.flow_generator.parameters(), *pipe.camera_reference.parameters()]


# ---------------------------------------------------------------------- loop


def train(args) -> int:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, DistributedType, gather_object, set_seed

    from .batches import encode_prompts, stage1_batch, stage2_batch, stage2_cached_batch
    from .data import ClipDataset, DatasetError, collate, find_clips
    from .latent_cache import CachedClips, LatentCache
    from .losses import Stage1Model, stage1_loss, stage2_loss

    out = Path(args.output)
    state_path = out / STATE_FILE
    start_step = 0
    init_dir = args.init
    if args.resume:
        if not state_path.is_file():
            raise TrainingSetupError(f"--resume: {state_path} does not exist (no earlier run in {out})")
        saved = json.loads(state_path.read_text(encoding="utf-8"))
        if saved.get("stage") != args.stage:
            raise TrainingSetupError(
                f"--resume: {out} was trained in stage {saved.get('stage')}, not {args.stage}"
            )
        start_step, init_dir = int(saved["step"]), str(out)

    if args.gradient_checkpointing and args.stage == 1:
        raise TrainingSetupError(
            "--gradient-checkpointing is for stage 2 only: stage 1's reference attention hands the CRM's "
            "features to the FGM outside the blocks, so recomputed blocks would not see the same features"
        )
    try:
        find_clips(args.data)  # a broken data folder fails before any model is loaded
    except DatasetError as exc:
        raise TrainingSetupError(str(exc)) from exc
    # Stage 1 leaves parts of the FGM unused when a sample has no tracks, so DDP must look for
    # parameters without gradients (else their gradients are never averaged and ranks drift).
    ddp = DistributedDataParallelKwargs(find_unused_parameters=args.stage == 1)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation,
        kwargs_handlers=[ddp],
    )
    set_seed(args.seed + start_step)
    device = accelerator.device

    pipe = build_pipeline(args, init_dir)
    if args.stage == 1 and not pipe.has_learned_stage1:
        raise TrainingSetupError(
            f"stage 1: the init checkpoint {init_dir} lacks " + ", ".join(pipe.missing_stage1())
        )
    params = set_trainable(pipe, args.stage, args.flow_noise)

    # Data at the stage's size: stage 2 the video size, stage 1 the pipeline's flow size.
    height, width = (args.height, args.width) if args.stage == 2 else pipe.flow_size(args.height, args.width)
    try:
        dataset = ClipDataset(
            args.data, args.num_frames, height, width, max_stride=args.max_stride,
            num_tracks=args.num_tracks if args.stage == 1 else 0, plucker=args.stage == 1,
        )  # fmt: skip
    except DatasetError as exc:
        raise TrainingSetupError(str(exc)) from exc
    prompt_cache = encode_prompts(pipe, dataset.prompts(), device) if args.stage == 2 else {}
    # Models go to the device by hand (frozen ones included); accelerate wraps the trained module
    # (DDP on several processes), the optimizer (fp16 loss scaling, accumulation) and the data.
    moved = ("transformer", "vae", "flow_encoder", "flow_fusion", "frequency_stabilizer") if args.stage == 2 \
        else ("flow_vae", "flow_generator", "camera_reference", "image_vae")  # fmt: skip
    for name in moved:
        getattr(pipe, name).to(device)
    if args.latent_cache:
        if args.stage != 2:
            raise TrainingSetupError(
                "--latent-cache is for stage 2 (stage 1 has no per-clip VAE latents to keep)"
            )
        cache = LatentCache(dataset, pipe.vae, args.latent_cache_dir)
        counts = cache.fill(device, rank=accelerator.process_index, world=accelerator.num_processes)
        counts = {k: sum(c[k] for c in gather_object([counts])) for k in counts}
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            print(json.dumps({"latent_cache": {**counts, "dir": str(cache.dir)}}), flush=True)
        dataset = CachedClips(cache)

    if args.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    if args.vae_tiling:
        pipe.vae.enable_tiling()

    # The trained module is wrapped first (DDP; FSDP shards it), then the optimizer is made.
    model = pipe.stage2 if args.stage == 2 else Stage1Model(pipe.flow_generator, pipe.camera_reference)
    model = accelerator.prepare(model)
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if fsdp:  # the sharded views; their optimizer state is per rank (not saved, see fsdp_note)
        params = [p for p in model.parameters() if p.requires_grad]
        accelerator.print(json.dumps({"note": fsdp_note()}))
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.resume and (out / OPTIMIZER_FILE).is_file() and not fsdp:
        load_optimizer(optimizer, out / OPTIMIZER_FILE)
    sampler_gen = torch.Generator().manual_seed(args.seed + start_step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=len(dataset) >= args.batch_size,
        num_workers=args.num_workers, collate_fn=collate, generator=sampler_gen,
    )  # fmt: skip
    optimizer, loader = accelerator.prepare(optimizer, loader)
    scheduler = pipe.scheduler if args.stage == 2 else pipe.flow_scheduler
    # Noise differs per rank (each sees other clips); rank 0 draws what a single process draws.
    generator = torch.Generator().manual_seed(
        args.seed * 1000003 + start_step + 7919 * accelerator.process_index
    )

    out.mkdir(parents=True, exist_ok=True)
    log = (out / LOG_FILE).open("a", encoding="utf-8")
    step, t0, losses = start_step, time.time(), []

    def save(step: int) -> None:
        # Every rank holds the same weights after a step (DDP averages the gradients, every rank
        # starts from the same seed): checked here, then the main process alone writes.
        accelerator.wait_for_everyone()
        digests = ["sharded (FSDP)"] if fsdp else gather_object([weights_digest(params)])
        if len(set(digests)) != 1:
            raise TrainingSetupError(f"the ranks' weights differ after step {step}: {digests}")
        with full_weights(model, fsdp):  # FSDP: the whole weights on rank 0 (collective)
            if accelerator.is_main_process:
                pipe.save_pretrained(out)
        if not accelerator.is_main_process:
            return
        if not fsdp:
            save_optimizer(
                optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer, out / OPTIMIZER_FILE
            )
        state = {"stage": args.stage, "step": step, "processes": accelerator.num_processes,
                 "backend": accelerator.state.backend, "rank_digests": digests,
                 "args": vars(args)}  # fmt: skip
        write_json(state_path, state)

    try:
        while step < args.steps:
            for batch in loader:
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        if args.stage == 2:
                            make = stage2_cached_batch if args.latent_cache else stage2_batch
                            b = make(pipe, batch, prompt_cache, device, generator)
                            loss = stage2_loss(model, scheduler, b, generator=generator)
                        else:
                            b = stage1_batch(pipe, batch, device)
                            loss = stage1_loss(
                                pipe.flow_generator, pipe.camera_reference, scheduler, b, generator=generator,
                                model=model,
                            )  # fmt: skip
                    if not torch.isfinite(loss):
                        raise TrainingSetupError(
                            f"the loss is {loss.item()} at step {step + 1} (clips {batch['clip']})"
                        )
                    accelerator.backward(loss)
                    losses.append(loss.detach().float().item())
                    if accelerator.sync_gradients:
                        if args.max_grad_norm > 0:
                            if fsdp:  # the norm over every rank's shard
                                model.clip_grad_norm_(args.max_grad_norm)
                            else:
                                accelerator.clip_grad_norm_(params, args.max_grad_norm)
                        lr = (
                            args.lr * min(1.0, (step + 1) / args.warmup_steps)
                            if args.warmup_steps
                            else args.lr
                        )
                        for group in optimizer.param_groups:
                            group["lr"] = lr
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                if not accelerator.sync_gradients:
                    continue
                step += 1
                loss_value = (
                    accelerator.gather(torch.tensor(sum(losses) / len(losses), device=device)).mean().item()
                )
                losses = []
                if accelerator.is_main_process:
                    record = {"step": step, "loss": loss_value, "lr": lr, "clips": batch["clip"],
                              "time_s": round(time.time() - t0, 3)}  # fmt: skip
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    print(json.dumps(record), flush=True)
                if step % args.save_every == 0 or step >= args.steps:
                    save(step)
                if step >= args.steps:
                    break
    except DatasetError as exc:
        raise TrainingSetupError(str(exc)) from exc
    finally:
        log.close()
        if args.stage == 2:
            pipe.stage2.detach()
    accelerator.wait_for_everyone()  # no rank leaves while the main one still writes
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Leave without the interpreter's teardown: torch's gloo process group, freed there with
        # the DDP reducer, can deadlock (its worker thread waits for the GIL the freeing thread
        # holds) or abort ("terminate called without an active exception"); both were seen on
        # 2-process runs. Every file is closed and every rank has passed the last barrier.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
