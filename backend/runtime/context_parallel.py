"""Context parallelism for the denoiser: one video's token sequence split across ranks (Ulysses).

Used by backend/cp_rank.py (one torchrun rank) through mode guided: after the pipeline is placed,
`apply_context_parallel(transformer, degree)` calls diffusers' `enable_parallelism` with
`ContextParallelConfig(ulysses_degree=degree)`. The model's own `_cp_plan` (diffusers 0.42.1:
`WanTransformer3DModel` has one, `CogVideoXTransformer3DModel` has none) splits the latent tokens
(dim 1 of `hidden_states` (B, L, C) and of the RoPE tables) across ranks before the first block and
gathers them after `proj_out`; inside attention, Ulysses all-to-alls trade the sequence split for
a head split, so each rank attends over the whole sequence for `heads / degree` heads. The result
equals the single-process one (tested on CPU with gloo: bit-identical frames).

Limits (what was and was not run): Ulysses only. Ring attention needs an attention op that
returns the log-sum-exp, which the native (CPU) attention does not, so ring was not run. NCCL on
GPUs was not run here. Offloading (model, group, sequential) and fp8 layerwise casting add their own
hooks to the same modules; those combinations were not tested: refused when the ranks were asked
for (ANIMATE_ANYTHING_CP=N), handed back to one process when the generator chose them (`check_plan`).
"""

from __future__ import annotations

from contextlib import contextmanager

from ..errors import JobFailure

# Families whose diffusers transformer has a context-parallel plan, decided without importing
# diffusers (checked against diffusers 0.42.1: WanTransformer3DModel._cp_plan is set,
# CogVideoXTransformer3DModel has none).
FAMILIES_WITH_PLAN = frozenset({"wan"})
OFF_HINT = "Set ANIMATE_ANYTHING_CP=0 to run the job in one process."
# Set by the parent in the ranks' environment when it chose the ranks itself (several GPUs seen).
AUTO_ENV = "ANIMATE_ANYTHING_CP_AUTO"


class NeedsOneProcess(Exception):
    """Automatic context parallelism, but the memory plan does not hold the whole model on each GPU
    (every rank holds all of it): the ranks stop and the parent runs the job in one process."""


def active_degree() -> int:
    """The world size of the initialised torch.distributed process group, else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def check_plan(plan, automatic: bool = False) -> None:
    """For a memory plan context parallelism was not tested with (any offloading or fp8 weights:
    `plan.offload`, `plan.fp8`; on any rank, so all ranks agree): NeedsOneProcess when the ranks were
    chosen automatically, else JobFailure("invalid_job")."""
    import torch
    import torch.distributed as dist

    offload, fp8 = getattr(plan, "offload", "none"), bool(getattr(plan, "fp8", False))
    whole = torch.tensor([int(offload == "none" and not fp8)])
    if dist.get_backend() == "nccl":
        whole = whole.cuda()
    dist.all_reduce(whole, op=dist.ReduceOp.MIN)
    if whole.item():
        return
    what = f"offload {offload!r}" if offload != "none" else "fp8 weights" if fp8 else "offload on another GPU"
    if automatic:
        raise NeedsOneProcess(f"the memory plan needs {what}")
    raise JobFailure(
        "invalid_job",
        f"several GPUs (context parallelism) with {what} is not supported: only whole models in "
        "bf16/fp16/fp32 on each GPU were tested",
        "Set offload to 'none' and fp8 off if each GPU holds the model, or " + OFF_HINT,
    )


def wan_tokens(pipe, height: int, width: int, num_frames: int) -> int:
    """The latent token count a Wan transformer sees for a (num_frames, height, width) video: latent
    frames (num_frames - 1) / temporal factor + 1, times the latent pixels over the patch size."""
    patch = tuple(pipe.transformer.config.patch_size)
    spatial, temporal = int(pipe.vae_scale_factor_spatial), int(pipe.vae_scale_factor_temporal)
    frames = (num_frames - 1) // temporal + 1
    return frames // patch[0] * (height // spatial // patch[1]) * (width // spatial // patch[2])


def check_tokens(tokens: int, degree: int) -> None:
    """JobFailure("invalid_job") unless `degree` ranks can share `tokens` equally (diffusers'
    split needs it)."""
    if tokens % degree:
        raise JobFailure(
            "invalid_job",
            f"the video has {tokens} latent tokens, which {degree} ranks cannot share equally",
            "Use a frame count or size whose token count the rank count divides (the trained sizes do "
            "for 2, 4 and 8 ranks), or " + OFF_HINT,
        )


def apply_context_parallel(transformer, degree: int) -> None:
    """Split `transformer`'s attention over `degree` ranks (Ulysses) in the current process group.

    Needs torch.distributed initialised with world size `degree`, the model's `_cp_plan`, and
    `num_attention_heads` divisible by `degree` (Ulysses gives each rank whole heads)."""
    from diffusers import ContextParallelConfig

    name = type(transformer).__name__
    if getattr(transformer, "_cp_plan", None) is None:
        raise JobFailure("invalid_job", f"{name} has no context-parallel plan in diffusers", OFF_HINT)
    heads = int(getattr(transformer.config, "num_attention_heads", 0) or 0)
    if heads % degree:
        raise JobFailure(
            "invalid_job",
            f"{name} has {heads} attention heads, which {degree} ranks cannot share (Ulysses: whole heads)",
            f"Use a rank count that divides {heads}, or " + OFF_HINT,
        )
    with _accelerator_count_on_cpu():
        transformer.enable_parallelism(config=ContextParallelConfig(ulysses_degree=degree))


@contextmanager
def _accelerator_count_on_cpu():
    """diffusers 0.42.1 `ModelMixin._resolve_parallel_config` picks the rank's device as
    `rank % torch.accelerator.device_count()`, a ZeroDivisionError where there is no accelerator
    (the CPU/gloo runs the tests use). Only there, and only for the duration of
    `enable_parallelism`, `device_count` reads 1, so the device is `cpu:0`; the library itself is not
    changed and a machine with an accelerator is untouched."""
    import torch

    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda *args, **kwargs: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original
