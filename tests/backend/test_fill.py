"""Hole filling: known pixels kept, holes filled from their surroundings, background preferred."""

from __future__ import annotations

import numpy as np
import pytest

from backend.preview.fill import fill_holes, push_pull
from tests.backend.jobs import texture


@pytest.mark.parametrize("method", ["pushpull", "telea"])
def test_known_pixels_are_kept_and_holes_filled(method):
    if method == "telea":
        pytest.importorskip("cv2")
    img = texture(40, 48)
    hole = np.zeros((40, 48), bool)
    hole[10:20, 15:30] = True
    hole[:, :4] = True  # a revealed border
    broken = img.copy()
    broken[hole] = 0
    out = fill_holes(broken, hole, method=method)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[~hole], img[~hole])
    assert out[hole].max(axis=-1).min() > 20  # nothing left black
    # Roughly the right colours: closer to the truth than to black.
    assert np.abs(out[hole].astype(int) - img[hole]).mean() < 0.5 * img[hole].mean()


def test_push_pull_reproduces_a_constant():
    img = np.full((33, 17, 3), 77.0, np.float32)
    w = np.ones((33, 17), np.float32)
    w[5:30, 2:15] = 0
    img[w == 0] = 0
    np.testing.assert_allclose(push_pull(img, w), 77.0, atol=1e-3)


def test_disocclusion_is_filled_from_the_background():
    """A hole between a near red object (left) and a far blue background (right and around)."""
    H, W = 32, 48
    img = np.zeros((H, W, 3), np.float32)
    img[...] = (0, 0, 255)
    depth = np.full((H, W), 10.0, np.float32)
    img[8:24, :16] = (255, 0, 0)
    depth[8:24, :16] = 4.0
    hole = np.zeros((H, W), bool)
    hole[8:24, 16:30] = True
    img[hole] = 0
    plain = fill_holes(img, hole, method="pushpull")
    aware = fill_holes(img, hole, depth=np.where(hole, np.inf, depth), method="background")
    red_plain = plain[hole][:, 0].mean()
    red_aware = aware[hole][:, 0].mean()
    assert red_aware < 10 < red_plain  # the depth-aware fill keeps the red out of the gap
    assert aware[hole][:, 2].min() > 200
    try:
        import cv2  # noqa: F401
    except ImportError:
        return
    telea = fill_holes(img, hole, method="telea")
    assert telea[hole][:, 0].mean() > 10  # OpenCV's inpainting smears the foreground in


def test_nothing_to_fill_and_nothing_to_fill_from():
    img = texture(8, 8)
    assert fill_holes(img, np.zeros((8, 8), bool)) is img
    assert not fill_holes(img, np.ones((8, 8), bool)).any()
