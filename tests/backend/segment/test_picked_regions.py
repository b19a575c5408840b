"""backend.segment.regions: the colour/edge segmentation of a picked image, OpenCV and numpy."""

from __future__ import annotations

import numpy as np
import pytest

from backend.segment import regions
from tests.backend.segment.synthetic import iou, textured_disc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_opencv_finds_the_textured_disc(seed):
    pytest.importorskip("cv2")
    image, disc = textured_disc(seed)
    got = regions.segment_opencv(image, (70, 44), max_pixels=int(0.35 * disc.size))
    assert iou(got, disc) > 0.9
    assert not (got & ~disc).sum() > 0.02 * disc.sum()  # conservative: hardly any background


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_finds_the_textured_disc(seed):
    image, disc = textured_disc(seed)
    got = regions.segment_numpy(image, (70, 44), max_pixels=int(0.35 * disc.size))
    assert iou(got, disc) > 0.85  # no GrabCut refinement: a little lower than OpenCV's > 0.9


def test_numpy_pure_helpers_match_scipy():
    """The numpy fallbacks (no scipy) give what scipy gives: hole filling, connected components."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(3)
    mask = rng.random((40, 50)) > 0.4
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *a, **k):
        if name.startswith("scipy"):
            raise ImportError("hidden")
        return real_import(name, *a, **k)

    labels, _ = ndimage.label(mask)
    biggest = np.bincount(labels.ravel())[1:].argmax() + 1
    y, x = np.argwhere(labels == biggest)[0]
    builtins.__import__ = no_scipy
    try:
        pure_holes = regions.fill_holes(mask)
        pure_part = regions.component(mask, int(x), int(y))
    finally:
        builtins.__import__ = real_import
    assert np.array_equal(pure_holes, ndimage.binary_fill_holes(mask))
    assert np.array_equal(pure_part, labels == biggest) and pure_part.sum() > 10


def test_conservative_drops_the_rim_only():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    c = regions.conservative(m)
    assert c.sum() == 64 and c[6:14, 6:14].all()
    edge = np.zeros((20, 20), bool)
    edge[:, :8] = True  # touches the image border: that side is not eroded
    assert regions.conservative(edge)[:, 0].all() and not regions.conservative(edge)[:, 7].any()
    dot = np.zeros((5, 5), bool)
    dot[2, 2] = True
    assert regions.conservative(dot).sum() == 1  # never erased to nothing


def test_bottleneck_cost_is_the_flood_fill_tolerance():
    """Two flat halves joined by a step of 10: the far half is reached at tolerance 10."""
    lab = np.zeros((6, 8, 3), np.float32)
    lab[:, 4:, 0] = 10.0
    cost = regions.bottleneck_cost(lab, 1, 1)
    assert np.all(cost[:, :4] == 0) and np.allclose(cost[:, 4:], 10.0)


def test_segment_is_deterministic_and_leaks_are_dropped():
    pytest.importorskip("cv2")
    image, disc = textured_disc(1)
    a, method = regions.segment(image, (70, 44), max_pixels=int(0.35 * disc.size))
    b, _ = regions.segment(image, (70, 44), max_pixels=int(0.35 * disc.size))
    assert method == "opencv" and np.array_equal(a, b)
    # with a limit below the disc's area the fills that leak past it are never chosen
    small = regions.segment_numpy(image, (70, 44), max_pixels=50)
    assert small.sum() <= 50
