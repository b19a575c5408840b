"""Synthetic job directories for tests (reusable: `from tests.backend.jobs import write_job`).

`write_job(dir, ...)` writes a valid job with blender_animate.job: a textured reference image
(smooth colour gradient + checkerboard, so motion is visible everywhere), a layered depth map
(a near square at `near` in front of a background at `far`, scene units), an OpenCV camera path
(static, dolly, pan or orbit) with K = [[W, 0, W/2], [0, W, H/2], [0, 0, 1]], and optional drags.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from blender_animate import job as jobio

ROOT = Path(__file__).resolve().parents[2]


def texture(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: colour gradients plus an 8-pixel checkerboard (no flat areas)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    checker = (((x // 8) + (y // 8)) % 2) * 60.0
    r = 40 + 150 * x / max(width - 1, 1) + checker
    g = 40 + 150 * y / max(height - 1, 1) + checker
    b = 120 + 60 * np.sin(x / 5.0 + seed) * np.cos(y / 7.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def square_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the near square: the centre third of the image."""
    return height // 3, 2 * height // 3, width // 3, 2 * width // 3


def cameras(kind: str, num_frames: int, height: int, width: int, *, step: float = 0.3):
    """c2w (F, 4, 4) OpenCV and K (F, 3, 3). kind: "static", "dolly" (forward along +z, `step`
    scene units a frame), "dolly_out" (backward), "pan" (right along +x) or "orbit" (yaw)."""
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    t = np.arange(num_frames, dtype=np.float64)
    if kind == "dolly":
        c2w[:, 2, 3] = step * t
    elif kind == "dolly_out":
        c2w[:, 2, 3] = -step * t
    elif kind == "pan":
        c2w[:, 0, 3] = step * t
    elif kind == "orbit":
        a = np.deg2rad(2.0) * t
        c2w[:, 0, 0] = np.cos(a)
        c2w[:, 0, 2] = np.sin(a)
        c2w[:, 2, 0] = -np.sin(a)
        c2w[:, 2, 2] = np.cos(a)
    elif kind != "static":
        raise ValueError(f"unknown camera kind {kind!r}")
    K = np.tile(
        np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64), (num_frames, 1, 1)
    )
    return c2w, K


def write_job(
    job_dir,
    *,
    width: int = 64,
    height: int = 48,
    num_frames: int = 5,
    camera: str = "dolly",
    step: float = 0.3,
    depth: str | None = "layers",
    near: float = 4.0,
    far: float = 10.0,
    tracks: np.ndarray | None = None,
    radius: float = 8.0,
    reference: np.ndarray | None = None,
    object_ids: np.ndarray | None = None,
    **spec_fields,
) -> Path:
    """Write a valid job directory and return its path. depth: "layers" (near square + far
    background), "flat" (everything at `far`) or None (no depth.npy). tracks: (P, F, 2) pixels.
    object_ids: (H, W) int32 for conditions.npz (job.json `objects` via spec_fields)."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    spec = jobio.JobSpec(width=width, height=height, num_frames=num_frames, **spec_fields)
    jobio.write_spec(job_dir, spec)
    img = texture(height, width) if reference is None else reference
    y0, y1, x0, x1 = square_box(height, width)
    if reference is None:
        img = img.copy()
        img[y0:y1, x0:x1] = (230, 40, 40)  # the near square is red
    save_png(job_dir / jobio.REFERENCE_PNG, img)
    if depth is not None:
        d = np.full((height, width), far, np.float32)
        if depth == "layers":
            d[y0:y1, x0:x1] = near
        jobio.save_depth(job_dir, d)
    c2w, K = cameras(camera, num_frames, height, width, step=step)
    cond = jobio.Conditions.create(
        c2w,
        K,
        tracks,
        None,
        None if tracks is None else np.full(len(tracks), radius, np.float32),
        None,
        object_ids,
        height=height,
        width=width,
    )
    cond.save(job_dir / jobio.CONDITIONS_NPZ)
    return job_dir


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.asarray(image, np.uint8)).save(path)


def write_video(path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Encode (N, H, W, 3) uint8 RGB frames as an H.264 mp4 with PyAV (test reference videos)."""
    from backend.mp4 import encode_mp4

    encode_mp4(Path(path), frames, fps)
    return Path(path)


def backend_env(extra_paths: list[str] | None = None) -> dict:
    """Environment for `python -m backend`: the extension root (and `extra_paths` first) on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(extra_paths or []), str(ROOT)])
    env.setdefault("ANIMATE_ANYTHING_THREADS", "2")
    return env


def run_backend(*args: str, extra_paths=None, timeout: float = 120, python: str | None = None):
    """Run `python -m backend *args` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [python or sys.executable, "-m", "backend", *map(str, args)],
        cwd=ROOT,
        env=backend_env(extra_paths),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_backend(*args: str, extra_paths=None) -> subprocess.Popen:
    """Start `python -m backend *args` with stdout piped (text, line-buffered)."""
    return subprocess.Popen(
        [sys.executable, "-m", "backend", *map(str, args)],
        cwd=ROOT,
        env=backend_env(extra_paths),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def parse_events(stdout: str) -> list[dict]:
    """Every stdout line is one JSON event; raises if a line is not."""
    import json

    return [json.loads(line) for line in stdout.splitlines() if line.strip()]
