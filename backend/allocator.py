"""Keep freed array memory in the process instead of handing it back to the OS (glibc only).

The preview allocates and frees tens of MB of temporaries per frame. glibc serves blocks above its
mmap threshold (at most 32 MiB) with fresh mmap()s and trims the heap eagerly, so every frame pays
page faults on memory it just freed; with several threads each one also gets its own arena, and
system time grows with the thread count (26-34 % of the CPU time at 720p and above, issue 14).
`keep_freed_memory` turns glibc's mmap use off (M_MMAP_MAX 0: every block comes from the heap and
is reused), turns trimming off (M_TRIM_THRESHOLD -1, mallopt(3): freed memory at the top of the
heap stays; a 1 GiB threshold handed a standby's 1 GiB reserve, its cap, back as soon as it was
freed, so 4K, or 1080p on 7 threads and more, had none) and, when asked, uses one arena for all
threads (M_ARENA_MAX 1: the per-frame blocks are few and large, so the arena lock costs nothing).
These are set in the process by `mallopt` (`python -m backend run` calls this first), not left
to MALLOC_* environment variables, and before the frame threads start. The process runs one job
and exits, so holding its peak memory until then costs nothing. A no-op where mallopt is
unavailable (macOS, Windows, musl). benchmarks/bench_preview.py measures the effect (threads 1
vs 2, with and without).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = -1  # never trim
# Off switch for measurements: ANIMATE_ANYTHING_MALLOC=default leaves glibc's settings alone.
ENV = "ANIMATE_ANYTHING_MALLOC"
_kept = False  # keep_freed_memory's settings took effect in this process
_reserved = 0  # bytes reserve() left in the heap, free for the job


# numpy's OpenBLAS starts a thread per core and, after each BLAS call (the flow's small matrix
# products), keeps them spinning and yielding: with the frame threads busy, that is CPU taken
# from them (at 720x480x49 on 2 cores: 2.6 s of system time with one frame thread; 2 threads
# 2.95 s -> 2.43 s wall, benchmarks/bench_preview.py). Per-frame work is parallel across
# frames, so numpy's BLAS runs on the calling thread. torch keeps its own thread pools.
BLAS_ENV = "OPENBLAS_NUM_THREADS"


def one_blas_thread() -> bool:
    """One OpenBLAS thread, unless OPENBLAS_NUM_THREADS is set already (an explicit value wins):
    the variable for libraries loaded from now on, and openblas_set_num_threads(1) in those
    already loaded (numpy's, found in /proc/self/maps; Linux). True when it took effect."""
    if BLAS_ENV in os.environ:
        return False
    os.environ[BLAS_ENV] = "1"
    if not sys.platform.startswith("linux"):
        return "numpy" not in sys.modules
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return False
    done = "numpy" not in sys.modules
    for path in sorted(p for p in paths if p.startswith("/")):
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle
        except OSError:
            continue
        for name in (
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
            "scipy_openblas_set_num_threads64_",
        ):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], None
                fn(1)
                done = True
                break
    return done


def keep_freed_memory(*, one_arena: bool = True) -> bool:
    """Tune glibc's malloc as described above (and numpy's BLAS threads: one_blas_thread); True
    when the malloc settings took effect."""
    global _kept
    if os.environ.get(ENV, "") != "default":
        one_blas_thread()
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
    _kept = bool(ok)
    return _kept


def reserve(nbytes: int) -> int:
    """Grow the heap by `nbytes` ahead of a job (a standby waiting for one): allocated, every
    page written, freed. Under keep_freed_memory's settings the freed block stays in the process,
    mapped, and the job's frames take their memory from it without faulting pages in, which a
    process's first run otherwise does for all of its working set (at 720x480 on 2 threads ~90 MB:
    0.1-0.15 s of system time, 12 % of the run, benchmarks/bench_preview.py). Returns the bytes
    reserved: 0 unless keep_freed_memory took effect (else freeing would hand the block back)."""
    global _reserved
    if not _kept or nbytes <= 0:
        return 0
    import numpy as np

    block = np.ones(int(nbytes), np.uint8)  # writes every page
    del block
    _reserved += int(nbytes)
    return int(nbytes)


def reserved_bytes() -> int:
    """The bytes reserve() set aside in this process: free for the job, though the system counts
    them as used."""
    return _reserved
