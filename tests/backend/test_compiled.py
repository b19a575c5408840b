"""The optional numba kernels' loader (backend/compiled.py): a kernel that does not build is a
warning and the numpy code it replaces, never a failed job; a kernel that builds is loaded once."""

from __future__ import annotations

import numpy as np
import pytest

from backend import compiled, outputs
from backend.modes import preview
from backend.preview import fill, pushpull, splat
from tests.backend.jobs import texture

pytestmark = pytest.mark.skipif(splat.compiled_kernel() is None, reason="numba is not installed")


def _splat_frame():
    img = texture(24, 32)
    flow = np.full((24, 32, 2), 1.5, np.float32)
    return splat.forward_splat(img, flow, np.full((24, 32), 3.0, np.float32), want_depth=True).image


def _fill_frame():
    img = texture(24, 32).astype(np.float32)
    hole = np.zeros((24, 32), bool)
    hole[8:12, 10:20] = True
    depth = np.full((24, 32), 5.0, np.float32)
    out = fill.fill_holes(img, hole, depth=depth)
    np.testing.assert_array_equal(out[~hole], np.clip(np.rint(img[~hole]), 0, 255).astype(np.uint8))
    assert out[hole].max() > 0
    return out


def _flow_colours():
    flow = np.random.default_rng(0).standard_normal((24, 32, 2)).astype(np.float32) * 5
    return outputs.color_flow(flow, outputs.flow_lut(20.0))


def _frame_flow():
    from tests.backend.jobs import cameras

    c2w, K = cameras("orbit", 3, 24, 32)
    c2w[:, 2, 3] = [0.0, 0.2, 0.4]
    depth = np.linspace(1.0, 6.0, 24 * 32, dtype=np.float32).reshape(24, 32)
    return preview.camera_flow(depth, K, c2w, kernels=preview.flow_kernels())[0]


# kernel module: (the function broken, its consumer module, the consumer's loader, its smoke
# test, a run of it)
KERNELS = {
    "backend.preview.splat_kernel": ("splat", splat, "compiled_kernel", "_smoke_test", _splat_frame),
    "backend.preview.fill_kernel": ("push_pull_at", pushpull, "compiled_kernel", "_smoke_test", _fill_frame),
    "backend.output_kernel": ("color_flow", outputs, "_output_kernel", "_smoke_test", _flow_colours),
    "backend.flow_kernel": ("finish", preview, "flow_kernels", "_flow_smoke_test", _frame_flow),
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_a_kernel_that_does_not_build_leaves_the_numpy_path(name, monkeypatch, capsys):
    import importlib

    broken_fn, consumer, loader, smoke_name, run = KERNELS[name]
    smoke = getattr(consumer, smoke_name)
    module = importlib.import_module(name)
    assert compiled.load(name, smoke) is module is compiled.load(name, smoke)  # loaded once
    compiled_result = run()

    def broken(*args):
        raise RuntimeError("LLVM ERROR: no target")

    monkeypatch.setattr(module, broken_fn, broken)
    assert compiled._load(name, smoke) is None
    err = capsys.readouterr().err
    assert f"{name} failed to build" in err and "LLVM ERROR" in err
    monkeypatch.setattr(consumer, loader, lambda: None)  # what a failed load leaves: the numpy path
    numpy_result = run()
    assert numpy_result.shape == compiled_result.shape
    np.testing.assert_allclose(numpy_result, compiled_result, atol=1.0)  # uint8 / float32 rounding
