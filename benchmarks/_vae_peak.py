"""Helper of memory_plan.py --measure-vae: peak RSS above the weights of one CogVideoX VAE decode
or encode with the real config (random weights, fp32, CPU). Args: LATENT_H LATENT_W LATENT_FRAMES
decode|encode."""

import gc
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffusers import AutoencoderKLCogVideoX  # noqa: E402

from backend.runtime.real_configs import cogvideox_vae  # noqa: E402

torch.set_num_threads(1)
h, w, n, what = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
vae = AutoencoderKLCogVideoX(**cogvideox_vae()).eval()
gc.collect()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
with torch.no_grad():
    if what == "decode":
        out = vae.decode(torch.randn(1, 16, n, h, w)).sample
    else:
        out = vae.encode(torch.randn(1, 3, (n - 1) * 4 + 1, h * 8, w * 8)).latent_dist.mode()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(
    f"{what} {w * 8}x{h * 8} {n} latent frames: delta_MB={(peak - base) / 1024:.0f} "
    f"out={tuple(out.shape)} {time.time() - t:.1f}s"
)
