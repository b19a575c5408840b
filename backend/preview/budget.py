"""What a preview's frames take from memory, and how many frame threads fit in what is free.

Each frame thread holds its own frame's flow, depth, splat canvas and fill (~100 bytes a pixel
measured at 1080p: peak RSS 0.75 GB on 2 threads, 1.95 GB on 8), so a preview's memory grows
with the thread count, not with the frame count. At 4K on 8 threads that is ~7-8 GB; on a
machine whose free memory cannot hold it, the preview runs fewer threads instead of swapping or
being killed. The standby's heap reserve (backend/standby.py) is sized from the same figures.
"""

from __future__ import annotations

# Bytes a pixel of the frame size: (shared by the run, per frame thread). Measured from the heap
# a run takes at 720x480 and 1280x720 on 1 and 2 threads, and from the peak RSS at 1080p on 2 and
# 8 (per thread ~96): rounded up.
HEAP_BYTES_PER_PIXEL = (32, 128)
# The share of the free memory the frame threads may plan on: the rest stays for the encoders,
# the page cache and what else grows meanwhile (Blender itself).
USABLE_SHARE = 0.75


def heap_bytes(width: int, height: int, threads: int) -> int:
    """Bytes a preview of width x height frames takes from the heap on `threads` frame threads."""
    shared, per_thread = HEAP_BYTES_PER_PIXEL
    return int(width) * int(height) * (shared + per_thread * max(1, int(threads)))


def frame_threads(width: int, height: int, wanted: int, free_bytes: int | None) -> int:
    """The most frame threads, up to `wanted`, whose heap_bytes fit in USABLE_SHARE of
    `free_bytes` (None: unknown, `wanted`); always at least 1."""
    wanted = max(1, int(wanted))
    if free_bytes is None:
        return wanted
    shared, per_thread = HEAP_BYTES_PER_PIXEL
    pixels = int(width) * int(height)
    fit = (free_bytes * USABLE_SHARE - shared * pixels) // max(1, per_thread * pixels)
    return int(max(1, min(wanted, fit)))
