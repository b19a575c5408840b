"""Keep freed array memory in the process instead of handing it back to the OS (glibc only).

The preview allocates and frees tens of MB of temporaries per frame. glibc serves blocks above its
mmap threshold (at most 32 MiB) with fresh mmap()s and trims the heap eagerly, so every frame pays
page faults on memory it just freed; with several threads each one also gets its own arena, and
system time grows with the thread count (26-34 % of the CPU time at 720p and above, issue 14).
`keep_freed_memory` turns glibc's mmap use off (M_MMAP_MAX 0: every block comes from the heap and
is reused), raises the trim threshold to 1 GiB and, when asked, uses one arena for all threads
(M_ARENA_MAX 1: the per-frame blocks are few and large, so the arena lock costs nothing). These
are set in the process by `mallopt` (`python -m backend run` calls this first), not left to
MALLOC_* environment variables, and before the frame threads start. The process runs one job and
exits, so holding its peak memory until then costs nothing. A no-op where mallopt is unavailable
(macOS, Windows, musl). benchmarks/bench_preview.py measures the effect (threads 1 vs 2, with and
without).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 1 << 30
# Off switch for measurements: ANIMATE_ANYTHING_MALLOC=default leaves glibc's settings alone.
ENV = "ANIMATE_ANYTHING_MALLOC"


def keep_freed_memory(*, one_arena: bool = True) -> bool:
    """Tune glibc's malloc as described above; True when it took effect."""
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "") == "default":
        return False
    try:
        # The symbols of the running process (libc among them): no ctypes.util.find_library,
        # which runs `ldconfig -p` in a subprocess (~50 ms at every start).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if one_arena:
        ok &= mallopt(M_ARENA_MAX, 1) == 1
    return bool(ok)
