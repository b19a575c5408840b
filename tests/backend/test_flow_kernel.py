"""Stage 1's projection compiled (backend/flow_kernel.py, used by the preview's frame_flow where
numba is installed) gives blender_animate.flow's numpy bits: every camera motion, far points,
points that pass behind the camera, zoom, and the drag term added between its two halves."""

from __future__ import annotations

import numpy as np
import pytest

from backend.modes.preview import flow_kernels
from blender_animate.flow import camera_flow, inverse_depth, unified_flow
from tests.backend.jobs import cameras

pytestmark = pytest.mark.skipif(flow_kernels() is None, reason="numba is not installed")
H, W, F = 36, 52, 6


def _depth(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = (1.0 + 4.0 * rng.random((H, W))).astype(np.float32)
    d[:3, :5] = np.inf  # far: moved by rotation and zoom only
    d[5, :4] = [0.0, -1.0, np.nan, 1e-3]  # not positive, not a number, very near
    return d


def _same(a, b) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)  # NaN where NaN, the same bits elsewhere


@pytest.mark.parametrize("kind", ["static", "dolly", "dolly_out", "pan", "orbit"])
def test_camera_flow_compiled_is_numpys(kind):
    c2w, K = cameras(kind, F, H, W, step=0.9)  # steps large enough to put near points behind
    K[3:, 0, 0] *= 1.3  # and a zoom
    depth = _depth(1)
    ours = camera_flow(depth, K, c2w, kernels=flow_kernels())
    _same(ours, camera_flow(depth, K, c2w))
    _same(ours, camera_flow(depth, K, c2w, inverse=inverse_depth(depth), kernels=flow_kernels()))
    if kind == "dolly":
        behind = ours[1][-1] == 0  # depth 0: behind the camera, flow 0, not valid
        assert behind.any() and (ours[0][-1][behind] == 0).all() and not ours[2][-1][behind].any()


def test_unified_flow_with_drags_compiled_is_numpys():
    c2w, K = cameras("orbit", F, H, W)
    c2w[:, 2, 3] = 0.1 * np.arange(F)
    tracks = np.stack(
        [
            np.stack([np.linspace(10, 20, F), np.linspace(8, 12, F)], -1),
            np.stack([np.linspace(40, 30, F), np.linspace(30, 28, F)], -1),
        ]
    ).astype(np.float32)
    depth = _depth(2)
    kw = dict(tracks=tracks, radius=np.array([6.0, 9.0], np.float32))
    ours = unified_flow(depth, K, c2w, kernels=flow_kernels(), inverse=inverse_depth(depth), **kw)
    theirs = unified_flow(depth, K, c2w, **kw)
    _same((ours.flow, ours.depth, ours.valid), (theirs.flow, theirs.depth, theirs.valid))
    assert np.abs(ours.flow[-1] - camera_flow(depth, K, c2w)[0][-1]).max() > 1  # the drags moved pixels
