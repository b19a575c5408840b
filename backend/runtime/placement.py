"""Placing a CPU-loaded diffusers pipeline on its device as a `MemoryPlan` says: offload none /
model / group / sequential, fp8 layerwise casting of the transformer(s), and the VAE's tiling and
slicing. Works for any diffusers pipeline with a `vae` component (GuidedCogVideoXPipeline,
GuidedWanPipeline, AnimateAnythingPipeline)."""

from __future__ import annotations

from ..errors import JobFailure
from .memory import MemoryPlan


def apply_plan(pipe, plan: MemoryPlan) -> None:
    """Move a CPU-loaded pipeline to plan.device with its offloading and VAE switches.

    Sequential offload is refused on the CPU (plan_memory never picks it there): it streams weights
    from the CPU to an accelerator, and CPU -> CPU it fails in the first forward. diffusers'
    enable_sequential_cpu_offload makes the execution device `cpu:0`; accelerate's hook then loads
    each weight with `Parameter(value).to("cpu:0")`, and since a CPU tensor's device is `cpu` (no
    index), torch copies it and returns a plain Tensor instead of the Parameter; the post-forward
    offload to "meta" then calls `Tensor(value, requires_grad=...)` and raises a TypeError (torch 2.13,
    accelerate 1.11). On CUDA the value is already on `cuda:0`, `.to("cuda:0")` is a no-op and the
    Parameter stays one; tests/guided/test_memory.py runs the same hooks with an index-less CPU
    execution device to check that the pipeline, the VAE and T5 work under them."""
    import torch

    if plan.offload == "sequential" and torch.device(plan.device).type == "cpu":
        raise JobFailure(
            "invalid_job",
            "offload 'sequential' needs a GPU: it streams the weights from the CPU to the GPU layer by "
            "layer, and on the CPU there is nothing to offload (and diffusers' sequential offload fails "
            "with CPU as its execution device)",
            "Set offload to auto or none for a CPU run, or run on a CUDA GPU.",
        )
    if getattr(plan, "fp8", False):
        # fp8 storage, compute in the plan's dtype, one layer upcast at a time (before any offload
        # hook, as diffusers' docs order them); norms and embeddings stay in the compute dtype.
        from .devices import torch_dtype

        for name in ("transformer", "transformer_2"):
            model = getattr(pipe, name, None)
            if model is not None:
                model.enable_layerwise_casting(
                    storage_dtype=torch.float8_e4m3fn, compute_dtype=torch_dtype(plan.dtype)
                )
    if plan.offload == "none":
        pipe.to(plan.device)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=plan.device)
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=plan.device)
    elif plan.offload == "group":
        pipe.enable_group_offload(
            onload_device=torch.device(plan.device),
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=plan.device.startswith("cuda"),
            exclude_modules=["vae"],  # 0.4 GiB; its causal-conv caches stay simple on one device
        )
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()
    if plan.vae_slicing:
        pipe.vae.enable_slicing()
    else:
        pipe.vae.disable_slicing()
