"""What a training run keeps between runs and checks across ranks (safetensors and JSON, never pickles).

`save_optimizer`/`load_optimizer`: AdamW's state as safetensors (tensors by "<param index>.<key>",
the param groups as JSON metadata). `write_json`: atomic. `weights_digest`: sha256 of the trained
parameters' exact values, which every rank must share after a step. `full_weights`: under FSDP, a
context in which rank 0 holds the whole weights so the checkpoint is written once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def save_optimizer(optimizer, path: Path) -> None:
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": json.dumps(state["param_groups"])}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
    save_file(tensors, str(path), metadata=meta)


def load_optimizer(optimizer, path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
    state: dict = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def fsdp_note() -> str:
    return (
        "FSDP (accelerate_fsdp_stage2.yaml): the checkpoint is gathered on rank 0 and written once; "
        "AdamW's state is sharded per rank and not saved, so --resume restarts its moments"
    )


def full_weights(model, fsdp: bool):
    """A context in which rank 0's module holds the whole weights (FSDP; every rank must enter
    it), or nothing to do (one process, DDP)."""
    import contextlib

    if not fsdp:
        return contextlib.nullcontext()
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel.summon_full_params(
        model, writeback=False, rank0_only=True, offload_to_cpu=True
    )


def weights_digest(params) -> str:
    """sha256 of the trained parameters' exact values (the check that every rank agrees)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
