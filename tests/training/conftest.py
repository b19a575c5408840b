"""Fixtures of the training tests: the tiny AnimateAnything models of tests/animateanything/conftest.py
(shared, not copied) and a tiny dataset in the training-data format."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tests.animateanything.conftest import tiny_stage1, tiny_stage2  # noqa: E402, F401  (fixtures)


def write_tiny_dataset(root, clips: int = 2, frames: int = 9, size: int = 32, shift: float = 1.0):
    """Clip folders in the training-data format (backend/training/data.py): PNG frames of a
    pattern moving right by ``shift`` px per frame, a RealEstate10K camera file (a camera moving
    left), the matching flow from frame 0 (save_flow) and a prompt."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from blender_animate.camera import CameraTrack, write_realestate10k
    from blender_animate.flowviz import save_flow

    root = Path(root)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for c in range(clips):
        clip = root / f"clip_{c:03d}"
        (clip / "frames").mkdir(parents=True, exist_ok=True)
        for f in range(frames):
            x = xx - shift * f
            img = np.stack(
                [128 + 100 * np.sin(x / 3 + c), 128 + 100 * np.cos(yy / 4), 64 + 0 * x], axis=-1
            ).astype(np.uint8)
            Image.fromarray(img).save(clip / "frames" / f"{f:05d}.png")
        c2w = np.tile(np.eye(4), (frames, 1, 1))
        c2w[:, 0, 3] = -0.01 * shift * np.arange(frames)
        K = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
        write_realestate10k(clip / "cameras.txt", CameraTrack(c2w=c2w, K=K, width=size, height=size))
        flow = np.zeros((frames, size, size, 2), np.float32)
        flow[..., 0] = shift * np.arange(frames)[:, None, None]
        save_flow(clip / "flow.npz", flow)
        (clip / "prompt.txt").write_text(f"a moving pattern {c}", encoding="utf-8")
    return root
