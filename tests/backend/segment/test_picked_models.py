"""The optional models of a picked image, with tiny random weights the tests build themselves."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from backend.segment import models
from backend.segment.models import ModelUnavailable
from tests.backend.segment.synthetic import textured_disc


def _bin_only(src, dst):
    """A copy of a model folder whose weights are a pickle-format .bin (never loaded here)."""
    shutil.copytree(src, dst)
    (dst / "model.safetensors").rename(dst / "pytorch_model.bin")
    return dst


def test_sam_folder_is_complete_and_loads(tiny_sam):
    from backend.segment.sam import load_sam

    assert models.folder_problems(tiny_sam, models.SEGMENT_TYPES) == []
    model, settings = load_sam(tiny_sam)
    assert type(model).__name__ == "Sam2Model" and settings["size"]["height"] == 64


def test_bin_only_folder_is_refused_with_a_way_out(tiny_sam, tiny_depth, tmp_path):
    from backend.segment.depth import load_depth_model
    from backend.segment.sam import load_sam

    for src, load in ((tiny_sam, load_sam), (tiny_depth, load_depth_model)):
        folder = _bin_only(src, tmp_path / src.name)
        with pytest.raises(ModelUnavailable, match="convert the weights to model.safetensors"):
            load(folder)


def test_incomplete_folders_say_what_is_missing(tiny_depth, tmp_path):
    folder = tmp_path / "no_processor"
    shutil.copytree(tiny_depth, folder)
    (folder / "preprocessor_config.json").unlink()
    assert models.folder_problems(folder, models.DEPTH_TYPES) == [
        "preprocessor_config.json (the image processor's settings)"
    ]
    wrong = models.folder_problems(folder, models.SEGMENT_TYPES)
    assert any("model_type 'depth_anything', expected 'sam2'" in p for p in wrong)
    with pytest.raises(ModelUnavailable, match="does not exist"):
        models.resolve_folder(str(tmp_path / "nowhere"), allow_download=False, what="SAM 2", example="x")


def test_sam_masks_shapes_seeding_and_determinism(tiny_sam):
    from backend.segment.sam import load_sam, sam_masks

    image, _ = textured_disc(0, height=48, width=80, cx=40, cy=24, r=12)
    model, settings = load_sam(tiny_sam)
    seeds = np.array([[40, 24], [5, 5], [70, 40]])
    a = sam_masks(model, settings, image, seeds)
    b = sam_masks(model, settings, image, seeds)
    assert a.shape == (3, 48, 80) and a.dtype == bool
    assert np.array_equal(a, b)
    # each seed is its own point batch: a seed alone gets the mask it gets among others
    single = sam_masks(model, settings, image, seeds[:1])
    assert np.array_equal(single[0], a[0])


def test_depth_is_planar_positive_with_the_fallback_median(tiny_depth):
    from backend.segment.depth import estimate_depth, load_depth_model

    image, _ = textured_disc(0, height=48, width=80, cx=40, cy=24, r=12)
    model, settings = load_depth_model(tiny_depth)
    depth = estimate_depth(model, settings, image, 7.5)
    assert depth.shape == (48, 80) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all()
    assert np.median(depth) == pytest.approx(7.5, rel=1e-4)
    assert np.array_equal(depth, estimate_depth(model, settings, image, 7.5))


def test_relative_inverse_depth_conversion():
    from backend.segment.depth import DISPARITY_FLOOR, to_planar_depth

    disparity = np.array([[0.0, 1.0], [2.0, 4.0]])  # large = near
    z = to_planar_depth(disparity, 10.0)
    assert z[1, 1] < z[1, 0] < z[0, 1] < z[0, 0]  # nearest has the largest disparity
    assert z[0, 0] / z[1, 1] == pytest.approx((1 + DISPARITY_FLOOR) / DISPARITY_FLOOR)
    assert np.median(z) == pytest.approx(10.0)
    metric = to_planar_depth(np.array([[1.0, 2.0], [3.0, 4.0]]), 5.0, "metric")
    assert np.allclose(metric / metric[0, 0], [[1, 2], [3, 4]])
