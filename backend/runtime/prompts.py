"""The prompt-embedding cache.

Prompt embeddings (T5-XXL: ~9.8 GB (9.1 GiB) of bf16 weights for a (1, 226, 4096) output) are cached as
safetensors files keyed by a hash of the checkpoint folder, the prompt and the sequence length, so
a prompt seen before never loads the text encoder again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path

from .checkpoints import Checkpoint
from .text import encode_prompts, load_text_encoder


def default_cache_dir() -> Path:
    """ANIMATE_ANYTHING_CACHE, else $XDG_CACHE_HOME/animate_anything, else ~/.cache/animate_anything."""
    env = os.environ.get("ANIMATE_ANYTHING_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "animate_anything"


def prompt_key(ckpt: Checkpoint, prompt: str, max_sequence_length: int) -> str:
    """sha256 of (checkpoint folder, prompt, sequence length): the text encoder need not be present
    to find a cached embedding."""
    payload = json.dumps(
        {
            "model": str(ckpt.path),
            "prompt": prompt,
            "max_sequence_length": int(max_sequence_length),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_prompt_path(
    ckpt: Checkpoint, prompt: str, max_sequence_length: int, cache_dir: Path | None
) -> Path:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache_dir / "prompt_embeds" / f"{prompt_key(ckpt, prompt, max_sequence_length)}.safetensors"


def prompt_embeddings(
    ckpt: Checkpoint,
    prompts: list[str],
    max_sequence_length: int,
    *,
    dtype: str = "fp32",
    device: str = "cpu",
    cache_dir: Path | None = None,
    use_cache: bool = True,
    masked: bool = False,
):
    """{prompt: (1, L, D) float32 CPU tensor} (`masked`: Wan's encoding, text.encode_prompts).
    Cached prompts are read from safetensors files; the
    others are encoded with the checkpoint's T5 (loaded, used on `device`, then freed) and cached.

    Returns (embeddings, loaded_text_encoder: bool)."""
    import torch
    from safetensors.torch import load_file, save_file

    found, todo = {}, []
    for prompt in dict.fromkeys(prompts):
        path = cached_prompt_path(ckpt, prompt, max_sequence_length, cache_dir)
        if use_cache and path.is_file():
            found[prompt] = load_file(str(path))["prompt_embeds"]
        else:
            todo.append(prompt)
    if not todo:
        return found, False
    tokenizer, text_encoder = load_text_encoder(ckpt, dtype=dtype)
    try:
        text_encoder.to(device)
        embeds = (
            encode_prompts(tokenizer, text_encoder, todo, max_sequence_length, device, masked=masked)
            .float()
            .cpu()
        )
    finally:
        del text_encoder
        gc.collect()
        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
    for prompt, emb in zip(todo, embeds):
        found[prompt] = emb.unsqueeze(0).contiguous()
        if use_cache:
            path = cached_prompt_path(ckpt, prompt, max_sequence_length, cache_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"prompt_embeds": found[prompt]}, str(tmp), metadata={"prompt": prompt[:1000]})
            os.replace(tmp, path)
    return found, True
