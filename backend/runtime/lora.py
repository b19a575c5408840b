"""Loading a LoRA (diffusers or original-format keys, safetensors only) onto any diffusers pipeline
with a LoRA loader mixin (GuidedCogVideoXPipeline, GuidedWanPipeline): the job's `lora` and
`lora_scale`. diffusers loads it through PEFT (`peft` in backend/requirements-generator.txt). For
Wan 2.2 A14B the LoRA goes on `transformer` (the high-noise expert)."""

from __future__ import annotations

from pathlib import Path

from blender_animate.model_limits import PICKLE_SUFFIXES

from ..errors import JobFailure

ADAPTER = "job_lora"


def load_lora(pipe, path: str, scale: float = 1.0) -> str:
    """Load the LoRA at `path` (a .safetensors file, or a folder holding
    pytorch_lora_weights.safetensors) as adapter "job_lora" at `scale`; returns the adapter name.
    JobFailure: missing_model (no such file), invalid_job (a pickle, or keys that fit no layer),
    missing_dependency (no peft)."""
    file = Path(path).expanduser()
    if file.suffix.lower() in PICKLE_SUFFIXES:
        raise JobFailure(
            "invalid_job",
            f"the LoRA {file} is pickled; only .safetensors are loaded",
            "Convert it to .safetensors (safetensors.torch.save_file) and point the job at that file.",
        )
    if not file.exists():
        raise JobFailure(
            "missing_model", f"the LoRA {file} does not exist", "Set the LoRA to a .safetensors file."
        )
    try:
        import peft  # noqa: F401
    except ModuleNotFoundError as exc:
        raise JobFailure(
            "missing_dependency",
            "loading a LoRA needs the peft package, not installed in this Python",
            "pip install peft (backend/requirements-generator.txt has it).",
        ) from exc
    where, kw = (str(file.parent), {"weight_name": file.name}) if file.is_file() else (str(file), {})
    try:
        pipe.load_lora_weights(where, adapter_name=ADAPTER, use_safetensors=True, local_files_only=True, **kw)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise JobFailure(
            "invalid_job",
            f"the LoRA {file} does not fit this model: {type(exc).__name__}: {exc}",
            "Use a LoRA trained for this base model (safetensors).",
        ) from exc
    pipe.set_adapters([ADAPTER], [float(scale)])
    return ADAPTER
