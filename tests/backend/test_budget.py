"""Frame threads under a memory budget: a preview runs fewer of them where its frames would not
fit in the free memory, says so, and makes the same frames."""

from __future__ import annotations

import numpy as np

from backend.context import load_context
from backend.modes import load_mode
from backend.preview import budget
from backend.preview.budget import HEAP_BYTES_PER_PIXEL, frame_threads, heap_bytes

SHARED, PER_THREAD = HEAP_BYTES_PER_PIXEL


def test_heap_bytes_grow_with_the_threads_not_the_frames():
    assert heap_bytes(1920, 1080, 2) == 1920 * 1080 * (SHARED + 2 * PER_THREAD)
    assert heap_bytes(1920, 1080, 8) - heap_bytes(1920, 1080, 7) == 1920 * 1080 * PER_THREAD
    assert heap_bytes(64, 48, 0) == heap_bytes(64, 48, 1)


def test_frame_threads_fit_in_the_usable_share_of_the_free_memory():
    W, H = 3840, 2160
    for n in range(1, 9):
        # Exactly n threads' heap in the usable share: n threads, and n - 1 with a byte less.
        free = int(np.ceil(heap_bytes(W, H, n) / budget.USABLE_SHARE))
        assert frame_threads(W, H, 8, free) == n
        if n > 1:
            assert frame_threads(W, H, 8, free - 2) == n - 1
    assert frame_threads(W, H, 8, 64 << 30) == 8  # never more than asked
    assert frame_threads(W, H, 8, 1 << 20) == 1  # always one
    assert frame_threads(W, H, 6, None) == 6  # free memory unknown (no /proc/meminfo)
    assert frame_threads(720, 480, 8, 2 << 30) == 8  # a 720x480 preview fits in 2 GB on 8 threads


def test_a_preview_short_of_memory_runs_fewer_threads_and_makes_the_same_frames(make_job, monkeypatch):
    job = make_job(width=64, height=48, num_frames=5, camera="dolly")
    monkeypatch.setenv("ANIMATE_ANYTHING_THREADS", "4")
    plenty = load_context(job)
    wide = load_mode("preview").generate(plenty).materialize(plenty)
    assert wide.info["frame_threads"] == 4 and not plenty.warnings
    # Free memory for two threads' frames (what the mode reads from /proc/meminfo: a test cannot
    # make this machine small).
    two = int(heap_bytes(64, 48, 2) / budget.USABLE_SHARE) + 1
    monkeypatch.setattr("backend.runtime.devices.host_free_memory", lambda: two)
    short = load_context(job)
    stream = load_mode("preview").generate(short)
    assert stream.frames.workers == 2
    narrow = stream.materialize(short)
    assert narrow.info["frame_threads"] == 2
    assert any("2 frame thread(s) instead of 4" in w and "64x48" in w for w in short.warnings), short.warnings
    np.testing.assert_array_equal(narrow.frames, wide.frames)
    np.testing.assert_array_equal(narrow.flow, wide.flow)
