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
