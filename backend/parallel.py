"""Per-frame work on a few threads (numpy, OpenCV, zlib and FFmpeg release the GIL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor


def map_ordered(fn: Callable[[int], object], n: int, workers: int, check_cancel=None) -> Iterator[object]:
    """Yield fn(0), fn(1), ... fn(n-1) in order, computed on `workers` threads with at most
    2 * workers results in flight. `check_cancel()` runs before each result is handed out; on any
    exception (a cancel included) queued work is dropped and running work finishes first, which
    takes at most one call of `fn` per thread."""
    if workers <= 1 or n <= 1:
        for i in range(n):
            if check_cancel is not None:
                check_cancel()
            yield fn(i)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frame")
    try:
        pending = {}
        ahead = 2 * workers
        for i in range(min(ahead, n)):
            pending[i] = pool.submit(fn, i)
        for i in range(n):
            if check_cancel is not None:
                check_cancel()
            result = pending.pop(i).result()
            nxt = i + ahead
            if nxt < n:
                pending[nxt] = pool.submit(fn, nxt)
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
