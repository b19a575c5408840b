"""Stage-2 training step with the latent cache against re-encoding every clip (one process, CPU).

A step here is what `python -m backend.training.train --stage 2` does per optimizer step: load a
sample, make the batch (VAE encode, or read the cache and sample), the loss, backward, AdamW. The
models are the tiny test models (tests/animateanything/conftest.py) with the real CogVideoX VAE
architecture at test width, so the ratio is a lower bound of the real one (the real VAE costs far
more per clip than the tiny transformer step). Best of --repeat timed steps after one warm step;
the cache fill is timed apart (once per clip). Run: .venv/bin/python benchmarks/bench_latent_cache.py
[--frames 9] [--size 32] [--repeat 5]
(the tiny transformer's learned positional embeddings are for 9 frames at 32x32)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.training.batches import stage2_batch, stage2_cached_batch  # noqa: E402
from backend.training.data import ClipDataset, collate  # noqa: E402
from backend.training.latent_cache import CachedClips, LatentCache  # noqa: E402
from backend.training.losses import stage2_loss  # noqa: E402
from tests.animateanything.conftest import build_tiny_pipeline  # noqa: E402
from tests.training.conftest import write_tiny_dataset  # noqa: E402


def step_time(pipe, dataset, make, repeat: int) -> float:
    params = list(pipe.stage2.trainable_parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    clips = dataset.cache.dataset if isinstance(dataset, CachedClips) else dataset
    width = pipe.transformer.config.text_embed_dim  # T5 is not part of a step: zero embeddings
    prompts = {p: torch.zeros(pipe.transformer.config.max_text_seq_length, width) for p in clips.prompts()}
    best = float("inf")
    for i in range(repeat + 1):
        t = time.perf_counter()
        batch = collate([dataset[i % len(dataset)]])
        loss = stage2_loss(pipe.stage2, pipe.scheduler, make(pipe, batch, prompts, "cpu", gen), generator=gen)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = build_tiny_pipeline(seed=0, stage1=False, text=False)
    pipe.stage2.set_trainable()
    pipe.stage2.train()
    with tempfile.TemporaryDirectory() as tmp:
        data = write_tiny_dataset(Path(tmp) / "data", clips=2, frames=args.frames, size=args.size)
        dataset = ClipDataset(data, args.frames, args.size, args.size, num_tracks=0, plucker=False)
        encode = step_time(pipe, dataset, stage2_batch, args.repeat)
        cache = LatentCache(dataset, pipe.vae)
        t = time.perf_counter()
        counts = cache.fill("cpu")
        fill = time.perf_counter() - t
        cached = step_time(pipe, CachedClips(cache), stage2_cached_batch, args.repeat)
    print(
        f"stage 2 step, tiny models, {args.frames} frames at {args.size}x{args.size}, CPU, "
        f"best of {args.repeat}"
    )
    print(f"  re-encoding every step   {encode * 1000:8.1f} ms")
    print(f"  latent cache             {cached * 1000:8.1f} ms   ({encode / cached:.2f}x faster)")
    print(f"  cache fill (once)        {fill * 1000:8.1f} ms for {counts['computed']} clips")


if __name__ == "__main__":
    main()
