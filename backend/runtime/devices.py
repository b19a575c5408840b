"""Which device a job runs on, how much memory it has free, and which dtype it computes in.
torch is imported inside the functions, so this module imports without it."""

from __future__ import annotations

import os

from ..errors import JobFailure


def resolve_device(requested: str) -> str:
    """ "auto" -> cuda if available, else mps, else cpu; an unavailable explicit device is refused."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested in ("", "auto"):
        return "cuda" if cuda else ("mps" if mps else "cpu")
    if requested == "cuda" and not cuda:
        raise JobFailure(
            "missing_dependency",
            f"device cuda was requested but this torch ({torch.__version__}) sees no CUDA GPU",
            "Install a CUDA build of torch in the generator environment, or set the device to auto/cpu.",
        )
    if requested == "mps" and not mps:
        raise JobFailure("missing_dependency", "device mps was requested but is not available here")
    return requested


def free_memory(device: str) -> int | None:
    """Free bytes on `device` (CUDA: cudaMemGetInfo), None where unknown."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    if device == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def pick_dtype(device: str, requested: str, bf16_supported: bool) -> str:
    if requested != "auto":
        return requested
    if device == "cpu":
        return "fp32"
    if device == "cuda":
        return "bf16" if bf16_supported else "fp16"
    return "fp16"


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def host_free_memory() -> int | None:
    """Available CPU RAM in bytes (MemAvailable of /proc/meminfo), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
