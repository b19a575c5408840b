"""Tiny real job folders for tests that start the generator without Blender.

`make_job(folder)` writes job.json, reference.png (a textured gradient), depth.npy and
conditions.npz for a camera that slides sideways, with one drag: the same files Blender's
export writes, through the same core writer (`tests.backend.jobs.write_job`, blender_animate.job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.backend.jobs import write_job


def make_job(folder, *, width=64, height=48, num_frames=9, mode="preview", fps=8.0, depth=True) -> Path:
    """A valid job: the camera slides 0.3 scene units right over the shot, in front of a flat
    depth of 4 units (no depth.npy with depth=False); one drag from 30 % to 60 % of the width."""
    tracks = np.zeros((1, num_frames, 2), np.float32)
    tracks[0, :, 0] = np.linspace(width * 0.3, width * 0.6, num_frames)
    tracks[0, :, 1] = height * 0.5
    return write_job(
        folder,
        width=width,
        height=height,
        num_frames=num_frames,
        camera="pan",
        step=0.3 / max(1, num_frames - 1),
        depth="flat" if depth else None,
        far=4.0,
        tracks=tracks,
        mode=mode,
        fps=fps,
        steps=1,
    )


def hide_pyav(folder) -> Path:
    """A folder to put first on PYTHONPATH so that `import av` fails in the generator (the
    numpy-and-Pillow path: PNG frames and flow frames, no mp4)."""
    folder = Path(folder)
    (folder / "av").mkdir(parents=True, exist_ok=True)
    (folder / "av" / "__init__.py").write_text("raise ImportError('PyAV hidden by the test')\n")
    return folder


def generate_job(folder, *, python=None, extra_paths=(), timeout=120, **job) -> Path:
    """make_job + a real run of `python -m backend run JOB`; returns the finished job folder."""
    from blender_animate.addon.client import GeneratorProcess

    folder = make_job(folder, **job)
    end = GeneratorProcess(folder, python, extra_paths=extra_paths).start().wait(timeout=timeout)
    if end["event"] != "done":
        raise RuntimeError(f"the generator failed on {folder}: {end}")
    return folder
