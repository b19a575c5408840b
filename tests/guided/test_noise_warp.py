"""Flow-warped initial noise: zero flow is the identity, a shift moves the noise, and every warped
frame stays a unit Gaussian (mean 0, std 1) even where the flow compresses or tears the image."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def _noise(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_zero_flow_is_identity():
    from backend.guided.pipeline import warp_noise

    noise0 = _noise((2, 4, 6, 9), 0)
    fill = _noise((2, 5, 4, 6, 9), 1)
    out = warp_noise(noise0, torch.zeros(5, 6, 9, 2), fill)
    for k in range(5):
        torch.testing.assert_close(out[:, k], noise0, rtol=0, atol=0)


def test_integer_shift_moves_the_noise_and_fills_the_hole():
    from backend.guided.pipeline import warp_noise

    noise0 = _noise((1, 3, 5, 8), 2)
    fill = _noise((1, 2, 3, 5, 8), 3)
    flow = torch.zeros(2, 5, 8, 2)
    flow[1, ..., 0] = 2.0  # frame 1: everything 2 latent pixels to the right
    out = warp_noise(noise0, flow, fill)
    torch.testing.assert_close(out[0, 1, :, :, 2:], noise0[0, :, :, :-2], rtol=0, atol=0)
    torch.testing.assert_close(out[0, 1, :, :, :2], fill[0, 1, :, :, :2], rtol=0, atol=0)


@pytest.mark.parametrize("scale", [0.6, 1.7])  # zoom out (many sources per target), zoom in (holes)
def test_warped_noise_stays_unit_gaussian(scale):
    from backend.guided.pipeline import warp_noise

    h, w = 60, 90
    noise0 = _noise((1, 16, h, w), 4)
    fill = _noise((1, 3, 16, h, w), 5)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    flow = torch.zeros(3, h, w, 2)
    for k, s in enumerate([1.0, (1 + scale) / 2, scale]):
        flow[k, ..., 0] = (xs - w / 2) * (s - 1)
        flow[k, ..., 1] = (ys - h / 2) * (s - 1)
    out = warp_noise(noise0, flow, fill)
    for k in range(3):
        frame = out[0, k]
        assert abs(frame.mean().item()) < 0.02
        assert abs(frame.std().item() - 1.0) < 0.02


def test_flow_to_latent_grid_scales_and_picks_frames():
    from backend.guided.pipeline import flow_to_latent_grid

    flow = torch.zeros(9, 16, 24, 2)
    flow[..., 0] = torch.arange(9, dtype=torch.float32)[:, None, None] * 8.0
    grid = flow_to_latent_grid(flow, 3, 2, 3)
    assert grid.shape == (3, 2, 3, 2)
    torch.testing.assert_close(grid[:, 0, 0, 0], torch.tensor([0.0, 4.0, 8.0]))  # frames 0, 4, 8 / 8 px
