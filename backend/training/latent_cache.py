"""The stage-2 latent cache: VAE latents and flow of every clip, computed once, as safetensors.

Stage 2 trains on top of a frozen VAE, so what it makes of a clip never changes: encoding the clip
at every step is wasted work. `LatentCache.fill()` encodes each clip once per frame stride it can be
sampled at and stores, per entry,
- `video_dist` (2C, T, h, w): the VAE's posterior of the clip (mean and log-variance, diffusers'
  `DiagonalGaussianDistribution.parameters`), so every step still draws a fresh latent;
- `image_dist` (2C, 1, h, w): the same for frame 0 (the I2V image latent);
- `flow` (F, H, W, 2): the flow at the training size, as the data set makes it. (The flow
  encoder is trained in stage 2, so its output is not cached: its input is.)

Where: `DATA/.latent_cache/<clip>/stride<s>-<F>x<H>x<W>.safetensors` (next to the clips;
`find_clips` ignores it), or a folder given with `--latent-cache-dir`. Each file's metadata holds a
key: sha256 of the clip's frames (or video) and flow file contents, the VAE's weights
(`component_fingerprint`), its dtype, the sizes and the stride. An entry whose key differs (a
changed clip, another VAE) is recomputed and replaced: that is the invalidation. Files are written
to a temporary name and renamed, so ranks filling side by side never see half a file.

`CachedClips` is the data set a cached run trains on: it draws the stride exactly as `ClipDataset`
does (the same random numbers), then reads the entry; `batches.stage2_cached_batch` samples the
latents with the training generator in the order `stage2_batch` does, so a cached run and an
uncached one train the same weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from blender_animate.flowviz import FLOW_KEY

from .data import FLOW_FILE, FRAMES_DIR, VIDEO_FILE, ClipDataset, read_prompt

CACHE_DIR = ".latent_cache"
FORMAT = "1"


def clip_content_hash(clip: Path) -> str:
    """sha256 over the names and bytes of what stage 2 reads: the frames (or video) and the flow."""
    h = hashlib.sha256(FORMAT.encode())
    frames = (
        sorted((clip / FRAMES_DIR).glob("*.png")) if (clip / FRAMES_DIR).is_dir() else [clip / VIDEO_FILE]
    )
    for path in [*frames, clip / FLOW_FILE]:
        h.update(str(path.relative_to(clip)).encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def flow_frame_count(clip: Path) -> int:
    """Frames in the clip's flow file (the clip's length), read from the array header only."""
    import zipfile

    fmt = np.lib.format
    with zipfile.ZipFile(clip / FLOW_FILE) as z, z.open(f"{FLOW_KEY}.npy") as fh:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = read(fh)
    return int(shape[0])


class LatentCache:
    """The cache of one data set for one VAE; see the module docstring."""

    def __init__(self, dataset: ClipDataset, vae, cache_dir: str | os.PathLike | None = None):
        from ..animateanything.checkpoint_io import component_fingerprint

        self.dataset = dataset
        self.vae = vae
        self.dir = Path(cache_dir) if cache_dir else dataset.root / CACHE_DIR
        self._vae_key = f"{component_fingerprint(vae)}:{vae.dtype}"
        self._clip_keys: dict[str, str] = {}

    def strides(self, clip: Path) -> list[int]:
        return list(range(1, self.dataset.stride_choices(flow_frame_count(clip)) + 1))

    def path(self, clip: Path, stride: int) -> Path:
        d = self.dataset
        return self.dir / clip.name / f"stride{stride}-{d.num_frames}x{d.height}x{d.width}.safetensors"

    def key(self, clip: Path, stride: int) -> str:
        if clip.name not in self._clip_keys:
            self._clip_keys[clip.name] = clip_content_hash(clip)
        d = self.dataset
        text = f"{self._clip_keys[clip.name]}|{self._vae_key}|{stride}|{d.num_frames}|{d.height}|{d.width}"
        return hashlib.sha256(text.encode()).hexdigest()

    def is_current(self, clip: Path, stride: int) -> bool:
        from safetensors import safe_open

        path = self.path(clip, stride)
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as fh:
                return (fh.metadata() or {}).get("key") == self.key(clip, stride)
        except Exception:  # noqa: BLE001 - an unreadable entry is recomputed
            return False

    def fill(self, device, *, rank: int = 0, world: int = 1) -> dict:
        """Compute the entries of this rank's share of the clips (clips[rank::world]) that are
        missing or stale; returns {"computed": n, "reused": m}. Call on every rank, then wait for
        all of them before training."""
        counts = {"computed": 0, "reused": 0}
        for clip in self.dataset.clips[rank::world]:
            for stride in self.strides(clip):
                if self.is_current(clip, stride):
                    counts["reused"] += 1
                    continue
                self._compute(clip, stride, device)
                counts["computed"] += 1
        return counts

    def _compute(self, clip: Path, stride: int, device) -> None:
        from safetensors.torch import save_file

        item = self.dataset._load(clip, np.random.default_rng(0), stride=stride)
        video = item["frames"][None].to(device, self.vae.dtype).permute(0, 2, 1, 3, 4)  # (1, 3, F, H, W)
        with torch.no_grad():
            video_dist = self.vae.encode(video).latent_dist.parameters[0]
            image_dist = self.vae.encode(video[:, :, :1]).latent_dist.parameters[0]
        tensors = {
            "video_dist": video_dist.detach().cpu().contiguous(),
            "image_dist": image_dist.detach().cpu().contiguous(),
            "flow": item["flow"].contiguous(),
        }
        path = self.path(clip, stride)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(
            tensors, str(tmp), metadata={"key": self.key(clip, stride), "clip": clip.name, "format": FORMAT}
        )
        os.replace(tmp, path)


class CachedClips(torch.utils.data.Dataset):
    """The stage-2 training set read from a filled `LatentCache`: items hold `video_dist`,
    `image_dist`, `flow`, `prompt` and `clip` (no frames are decoded)."""

    def __init__(self, cache: LatentCache):
        self.cache = cache
        self.clips = cache.dataset.clips
        self._lengths = {c.name: flow_frame_count(c) for c in self.clips}

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        from safetensors.torch import load_file

        clip = self.clips[index]
        # The same draws as ClipDataset.__getitem__/_load: one torch integer, then the stride.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        stride = int(rng.integers(1, self.cache.dataset.stride_choices(self._lengths[clip.name]) + 1))
        item = load_file(str(self.cache.path(clip, stride)))
        return {**item, "prompt": read_prompt(clip), "clip": clip.name}
