"""Flow-warped initial noise at pixel resolution (backend/runtime/noise.py), used by both families:
zero flow is the identity, a shift of whole cells moves the noise, a shift smaller than one latent
cell moves it too, every warped frame stays a unit Gaussian (mean 0, std 1) where the flow compresses
or tears the image, and the degradation mix keeps unit variance."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def _noise(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _warp(*args, **kw):
    from backend.runtime.noise import warp_noise_pixels

    return warp_noise_pixels(*args, **kw)


def test_zero_flow_is_identity():
    noise0 = _noise((2, 4, 6, 9), 0)
    fill = _noise((2, 3, 4, 6, 9), 1)
    out = _warp(noise0, torch.zeros(9, 48, 72, 2), fill)  # 8 px cells, latent frames 0, 4, 8
    for k in range(3):
        torch.testing.assert_close(out[:, k], noise0, rtol=0, atol=1e-6)


def test_whole_cell_shift_moves_the_noise_and_fills_the_hole():
    noise0 = _noise((1, 3, 5, 8), 2)
    fill = _noise((1, 2, 3, 5, 8), 3)
    flow = torch.zeros(5, 40, 64, 2)
    flow[4, ..., 0] = 16.0  # latent frame 1 (pixel frame 4): two cells to the right
    out = _warp(noise0, flow, fill)
    torch.testing.assert_close(out[0, 1, :, :, 2:], noise0[0, :, :, :-2], rtol=0, atol=1e-5)
    hole = out[0, 1, :, :, :2]
    assert not torch.allclose(hole, noise0[0, :, :, :2], atol=0.1)  # fresh noise where nothing lands


def test_sub_cell_motion_moves_the_noise():
    """3 px is less than one 8 px cell: latent-resolution nearest warping would keep the noise still."""
    noise0 = _noise((1, 16, 12, 12), 4)
    fill = _noise((1, 2, 16, 12, 12), 5)
    flow = torch.zeros(5, 96, 96, 2)
    flow[4, ..., 0] = 3.0
    out = _warp(noise0, flow, fill)
    moved, still = out[0, 1, :, :, 1:], noise0[0, :, :, 1:]
    assert (moved - still).abs().mean() > 0.2  # the noise moved
    # ... by 3/8 of a cell: each cell now mixes itself (5/8) and its left neighbour (3/8)
    expected = (5 * noise0[0, :, :, 1:] + 3 * noise0[0, :, :, :-1]) / 8
    corr = torch.corrcoef(torch.stack([moved.flatten(), expected.flatten()]))[0, 1]
    # the rest of each cell's value is the pixel-level residual: corr ~ sqrt(34 / 64) = 0.73
    assert 0.65 < corr < 0.8


@pytest.mark.parametrize("scale", [0.6, 1.7])  # zoom out (many sources per target), zoom in (holes)
def test_warped_noise_stays_unit_gaussian(scale):
    h, w, s = 30, 45, 4
    noise0 = _noise((1, 16, h, w), 4)
    fill = _noise((1, 3, 16, h, w), 5)
    H, W = h * s, w * s
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    flow = torch.zeros(9, H, W, 2)
    for k, z in enumerate([1.0, (1 + scale) / 2, scale]):
        flow[4 * k, ..., 0] = (xs - W / 2) * (z - 1)
        flow[4 * k, ..., 1] = (ys - H / 2) * (z - 1)
    out = _warp(noise0, flow, fill)
    for k in range(3):
        frame = out[0, k]
        assert abs(frame.mean().item()) < 0.03
        assert abs(frame.std().item() - 1.0) < 0.05


def test_degradation_mixes_fresh_noise_at_unit_variance():
    noise0 = _noise((1, 16, 20, 20), 6)
    fill = _noise((1, 2, 16, 20, 20), 7)
    flow = torch.zeros(5, 160, 160, 2)
    full = _warp(noise0, flow, fill, degradation=1.0)
    torch.testing.assert_close(full, fill, rtol=0, atol=1e-6)  # gamma 1: only fresh noise
    half = _warp(noise0, flow, fill, degradation=0.5)
    assert abs(half[0, 1].std().item() - 1.0) < 0.03
    with pytest.raises(ValueError, match="degradation"):
        _warp(noise0, flow, fill, degradation=1.5)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="integer cell size"):
        _warp(_noise((1, 4, 6, 9), 0), torch.zeros(5, 50, 72, 2), _noise((1, 2, 4, 6, 9), 1))
