"""The allocator tuning takes effect on glibc and is a harmless no-op elsewhere."""

from __future__ import annotations

import platform
import sys

import numpy as np

from backend.allocator import keep_freed_memory


def test_keep_freed_memory():
    ok = keep_freed_memory()
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert ok is True
    else:
        assert ok is False
    a = np.ones(10_000_000)  # allocating and freeing still works afterwards
    assert a.sum() == 10_000_000


FAULTS = """
import resource, sys
import numpy as np
from backend.allocator import keep_freed_memory
keep_freed_memory()
def touch():
    a = np.empty(64 << 20, np.uint8)
    a[::4096] = 1  # one write per page
    del a
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_freed_blocks_are_reused_without_new_page_faults():
    """Five more 64 MiB temporaries after the first: with the tuning they reuse its pages (next to no
    new faults); glibc's default maps and faults each one in again (5 x 16384 pages, fewer where
    transparent huge pages serve them)."""
    import os
    import subprocess

    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        return
    from tests.backend.jobs import ROOT

    def faults(env):
        r = subprocess.run(
            [sys.executable, "-c", FAULTS], cwd=ROOT, env=os.environ | env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return int(r.stdout.split()[-1])

    tuned, default = faults({}), faults({"ANIMATE_ANYTHING_MALLOC": "default"})
    assert tuned < 100 and default > 10 * max(tuned, 100), (tuned, default)
