"""Keep freed array memory in the process instead of handing it back to the OS (glibc only).

The preview allocates and frees tens of MB of temporaries per frame. glibc serves blocks above its
mmap threshold with fresh mmap()s and trims the heap eagerly, so every frame pays page faults on
memory it just freed: ~25 % of the splatting's CPU time at 720x480 (benchmarks/bench_preview.py).
Raising the mmap threshold to its maximum (32 MiB on 64-bit) and the trim threshold to 1 GiB lets
the heap keep and reuse that memory. The process runs one job and exits, so holding its peak
memory until then costs nothing. A no-op where mallopt is unavailable (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit for this setting on 64-bit
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; True when it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim
