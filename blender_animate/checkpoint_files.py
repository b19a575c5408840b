"""Is a diffusers-layout checkpoint folder complete? File checks only (stdlib), shared by the
generator (backend/runtime/checkpoints.py: before loading anything; the doctor) and the add-on
(before the reference render, so that a Generate that cannot run says so at once).

A folder holds transformer/, vae/, scheduler/, text_encoder/ and tokenizer/; weights are
safetensors only (one file or complete shards); a folder with only .bin/.pt weights is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

PIPELINE_COMPONENTS = ("transformer", "vae", "scheduler")
TEXT_COMPONENTS = ("text_encoder", "tokenizer")


def weights_stem(component: str) -> str:
    """The weights file name stem of a component: transformers' `model`, diffusers' otherwise."""
    return "model" if component == "text_encoder" else "diffusion_pytorch_model"


def weights_problem(folder: Path, stem: str) -> str | None:
    """None when `folder` holds safetensors weights named `stem` (single file or complete shards),
    else what is wrong (also used for AnimateAnything checkpoints: backend/animateanything/checkpoint.py)."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return None
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            return f"{index.name} is unreadable ({exc})"
        absent = [s for s in shards if not (folder / s).is_file()]
        if absent:
            return f"shards {', '.join(absent)} of {index.name} are missing"
        return None
    pickles = [p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    if pickles:
        return f"only non-safetensors weights ({', '.join(sorted(pickles))}); safetensors are required"
    return f"{single.name} (or {index.name})"


def missing_parts(path: Path, components=PIPELINE_COMPONENTS + TEXT_COMPONENTS) -> list[str]:
    """What is missing in a diffusers-layout folder (CogVideoX, Wan), one readable line per problem."""
    problems = []
    for comp in components:
        folder = path / comp
        if not folder.is_dir():
            problems.append(f"{comp}/ (folder missing)")
            continue
        if comp == "scheduler":
            if not (folder / "scheduler_config.json").is_file():
                problems.append("scheduler/scheduler_config.json")
            continue
        if comp == "tokenizer":
            if not (folder / "tokenizer_config.json").is_file():
                problems.append("tokenizer/tokenizer_config.json")
            if not any((folder / n).is_file() for n in ("tokenizer.json", "spiece.model")):
                problems.append("tokenizer/tokenizer.json or tokenizer/spiece.model")
            continue
        if not (folder / "config.json").is_file():
            problems.append(f"{comp}/config.json")
        wrong = weights_problem(folder, weights_stem(comp))
        if wrong:
            problems.append(f"{comp}/ weights: {wrong}")
    return problems
