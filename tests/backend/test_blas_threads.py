"""numpy's OpenBLAS runs on the calling thread in the generator (backend.allocator.one_blas_thread):
its spinning worker threads took CPU from the frame threads (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.backend.jobs import ROOT

PROBE = """
import ctypes, sys
import numpy as np
from backend.allocator import keep_freed_memory
keep_freed_memory()
libs = sorted({l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower()})
get = [getattr(ctypes.CDLL(p), n) for p in libs for n in ('openblas_get_num_threads64_',
       'openblas_get_num_threads') if hasattr(ctypes.CDLL(p), n)]
np.ones((300, 300)) @ np.ones((300, 300))  # BLAS still works
print(len(get), ",".join(str(g()) for g in get))
"""


def _probe(extra_env: dict) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | extra_env
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), out[1].split(",") if len(out) > 1 else []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_numpy_blas_runs_on_one_thread_unless_asked_otherwise():
    n, threads = _probe({})
    if n == 0:
        pytest.skip("numpy is not linked to OpenBLAS here")
    assert threads == ["1"] * n  # numpy was imported first: set at run time
    n, threads = _probe({"OPENBLAS_NUM_THREADS": "2"})
    assert threads == ["2"] * n or os.cpu_count() == 1  # an explicit value wins
