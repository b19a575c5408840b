"""A textured disc on a textured background: the known answer of the segmentation tests."""

from __future__ import annotations

import numpy as np


def textured_disc(
    seed: int = 0, height: int = 96, width: int = 128, cx: float = 70.0, cy: float = 44.0, r: float = 26.0
):
    """(image (H, W, 3) uint8, disc (H, W) bool): a reddish disc with a checker-like texture and
    noise over a striped green-brown background with noise (both textures stronger than a plain
    colour threshold can take)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    bg = np.stack(
        [120 + 40 * np.sin(xx / 3.0), 140 + 30 * np.cos(yy / 4.0), 90 + 20 * np.sin((xx + yy) / 5.0)], -1
    )
    fg = np.stack(
        [200 + 25 * np.sin(xx / 2.0) * np.cos(yy / 2.0), 70 + 20 * np.sin(yy / 2.5), 60 + 0 * xx], -1
    )
    disc = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 < r**2
    image = np.where(disc[..., None], fg, bg) + rng.normal(0, 12, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), disc


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)
