"""One video encoded in runs of frames side by side (backend/mp4.py encode_in_parts, flow.mp4's
writer): the joined file is one valid H.264 MP4 that PyAV and Blender's FFmpeg read whole, in
order, with a key frame where each run starts; a stop in one run leaves no file; runs that
cannot be joined are encoded again as one."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from backend import mp4

av = pytest.importorskip("av")

W, H, FPS = 64, 48, 24.0


def _frames(count: int) -> list[np.ndarray]:
    """Frame f: a bright bar at column 2 * f on a dark gradient, so each frame is told apart."""
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x, y, x + y], -1).astype(np.uint8)
    frames = []
    for f in range(count):
        img = base.copy()
        img[:, (2 * f) % W : (2 * f) % W + 4] = 255
        frames.append(img)
    return frames


def _decode(path) -> tuple[list[np.ndarray], list[bool], list[int]]:
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    rgb = [d.to_ndarray(format="rgb24") for d in decoded]
    return rgb, [d.key_frame for d in decoded], [d.pts for d in decoded]


def test_part_bounds_split_evenly_and_never_below_the_minimum():
    assert mp4.part_bounds(49, 2) == [0, 24, 49]
    assert mp4.part_bounds(49, 4) == [0, 12, 24, 37, 49]
    assert mp4.part_bounds(15, 2) == [0, 15]  # two runs would be shorter than MIN_PART_FRAMES
    assert mp4.part_bounds(3, 8) == [0, 3] and mp4.part_bounds(40, 1) == [0, 40]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_runs_side_by_side_join_into_one_video_in_order(tmp_path, parts):
    count = 30
    frames = _frames(count)
    threads: dict[int, set] = {}

    def make(f: int) -> np.ndarray:
        threads.setdefault(f, set()).add(threading.get_ident())
        return frames[f]

    seen = []
    with ThreadPoolExecutor(max_workers=parts) as pool:
        codec = mp4.encode_in_parts(
            tmp_path / "v.mp4", W, H, FPS, count, make, pool, parts, on_frame=seen.append
        )
    assert codec in mp4.H264_CODECS
    assert sorted(threads) == list(range(count))  # every frame made once
    bounds = mp4.part_bounds(count, parts)
    assert len(bounds) - 1 == parts
    for a, b in zip(bounds, bounds[1:]):  # a run's frames on one thread, in order
        assert len(set().union(*(threads[f] for f in range(a, b)))) == 1
    assert seen[-1] == count and seen == sorted(seen)

    decoded, keys, pts = _decode(tmp_path / "v.mp4")
    assert len(decoded) == count and pts == sorted(pts) and len(set(pts)) == count
    if codec == "libx264":
        assert [f for f, k in enumerate(keys) if k] == bounds[:-1]
    # Each decoded frame is its own source frame (the bar's position), not a neighbour's.
    for f, d in enumerate(decoded):
        errors = [np.abs(d.astype(int) - frames[g]).mean() for g in range(count)]
        assert int(np.argmin(errors)) == f and errors[f] < 4.0
    assert not list(tmp_path.glob(".*.part"))
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        seconds = float(stream.duration * stream.time_base)
    assert seconds == pytest.approx(count / FPS, abs=1.5 / FPS)


def test_a_stop_in_one_run_stops_the_others_and_leaves_no_file(tmp_path):
    made = []

    def check():
        if len(made) >= 12:
            raise KeyboardInterrupt("stop")  # what a cancel raises is no Exception either

    def make(f: int):
        made.append(f)
        return _frames(1)[0]

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(KeyboardInterrupt):
        mp4.encode_in_parts(tmp_path / "v.mp4", W, H, FPS, 40, make, pool, 2, check=check)
    assert len(made) <= 14  # at most one frame per run after the stop
    assert list(tmp_path.iterdir()) == []


def test_runs_that_cannot_be_joined_are_encoded_again_as_one(tmp_path, monkeypatch):
    """With B-frames (x264 medium) a run's first packet would decode before the previous run's
    last: the runs are not joined, the video is encoded again as one run (one key frame)."""
    monkeypatch.setattr(mp4, "X264_OPTIONS", {"preset": "medium", "crf": "18"})
    frames = _frames(24)
    with ThreadPoolExecutor(max_workers=2) as pool:
        codec = mp4.encode_in_parts(tmp_path / "v.mp4", W, H, FPS, 24, frames.__getitem__, pool, 2)
    if codec != "libx264":
        pytest.skip("x264's presets only")
    decoded, keys, pts = _decode(tmp_path / "v.mp4")
    assert len(decoded) == 24 and keys.count(True) == 1 and pts == sorted(pts)
    assert all(np.abs(d.astype(int) - frames[f]).mean() < 4.0 for f, d in enumerate(decoded))
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


BLENDER_READS = """
import sys, bpy
image = bpy.data.images.load(sys.argv[1])
clip = bpy.data.movieclips.load(sys.argv[1])
print("FRAMES", image.frame_duration, clip.frame_duration)
"""


@pytest.mark.blender
def test_blender_reads_every_frame_of_a_joined_video(tmp_path):
    pytest.importorskip("bpy")
    frames = _frames(32)
    with ThreadPoolExecutor(max_workers=2) as pool:
        mp4.encode_in_parts(tmp_path / "v.mp4", W, H, FPS, 32, frames.__getitem__, pool, 2)
    argv = [sys.executable, "-c", BLENDER_READS, str(tmp_path / "v.mp4")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FRAMES"))
    assert line.split()[1:] == ["32", "32"], proc.stderr[-2000:]
