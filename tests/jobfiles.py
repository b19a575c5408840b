"""Tiny real job folders for tests that start the generator without Blender.

`make_job(folder)` writes job.json, reference.png (a textured gradient), depth.npy and
conditions.npz for a camera that dollies sideways, with one drag: the same files Blender's
export writes, through the same core writer (blender_animate.job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from blender_animate import job as jobio


def make_job(folder, *, width=64, height=48, num_frames=9, mode="preview", fps=8.0, depth=True) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = jobio.JobSpec(mode=mode, width=width, height=height, num_frames=num_frames, fps=fps, steps=1)
    jobio.write_spec(folder, spec)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), ((x // 8 + y // 8) % 2) * 255], -1
    )
    Image.fromarray(rgb.astype(np.uint8)).save(folder / jobio.REFERENCE_PNG)
    if depth:
        jobio.save_depth(folder, np.full((height, width), 4.0, np.float32))
    c2w = np.tile(np.eye(4), (num_frames, 1, 1))
    c2w[:, 0, 3] = np.linspace(0.0, 0.3, num_frames)  # slide right
    f = 0.8 * width
    K = np.tile(np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64), (num_frames, 1, 1))
    tracks = np.zeros((1, num_frames, 2), np.float32)
    tracks[0, :, 0] = np.linspace(width * 0.3, width * 0.6, num_frames)
    tracks[0, :, 1] = height * 0.5
    jobio.Conditions.create(c2w, K, tracks, height=height, width=width).save(folder / jobio.CONDITIONS_NPZ)
    return folder


def hide_pyav(folder) -> Path:
    """A folder to put first on PYTHONPATH so that `import av` fails in the generator (the
    numpy-and-Pillow path: PNG frames and flow frames, no mp4)."""
    folder = Path(folder)
    (folder / "av").mkdir(parents=True, exist_ok=True)
    (folder / "av" / "__init__.py").write_text("raise ImportError('PyAV hidden by the test')\n")
    return folder


def generate_job(folder, *, python=None, extra_paths=(), timeout=120, **job) -> Path:
    """make_job + a real run of `python -m backend run JOB`; returns the finished job folder."""
    from blender_animate.client import GeneratorProcess

    folder = make_job(folder, **job)
    end = GeneratorProcess(folder, python, extra_paths=extra_paths).start().wait(timeout=timeout)
    if end["event"] != "done":
        raise RuntimeError(f"the generator failed on {folder}: {end}")
    return folder
