"""Wan-Move conditioning (backend/wan/tracks.py) and the guidance helpers (backend/runtime/guidance.py):
the conditioning tensor holds frame 0's latent feature of each track's start cell at the track's cell
of every later latent frame where it is visible; camera tracks follow the unified flow; Time-to-Move's
indices and masks."""

from __future__ import annotations

import numpy as np
import pytest

from backend.runtime.guidance import coverage_mask, latent_mask, ttm_indices

torch = pytest.importorskip("torch")


def test_track_condition_copies_frame_zero_features_along_visible_tracks():
    from backend.wan.tracks import track_condition

    latent = torch.randn(1, 6, 4, 5, 7, generator=torch.Generator().manual_seed(0))  # K = 4 latent frames
    F = 13
    tracks = np.zeros((3, F, 2), np.float32)
    tracks[0] = np.stack([3.5 + 3.9 * np.arange(F), np.full(F, 10.0)], -1)  # moves right
    tracks[1] = np.stack([np.full(F, 50.5), 30.5 - 2.0 * np.arange(F)], -1)  # moves up
    tracks[2] = [[20.5, 20.5]] * F
    visible = np.ones((3, F), bool)
    visible[1, 8] = False  # hidden at latent frame 2
    visible[2, 0] = False  # not visible at its start: never copied
    out = track_condition(latent, tracks, visible)
    expected = latent.clone()
    for n in range(2):
        x0, y0 = (tracks[n, 0] // 8).astype(int)
        for k in range(1, 4):
            f = 4 * k
            x, y = (tracks[n, f] // 8).astype(int)
            if visible[n, f] and 0 <= x < 7 and 0 <= y < 5:
                expected[0, :, k, y, x] = latent[0, :, 0, y0, x0]
                torch.testing.assert_close(out[0, :, k, y, x], latent[0, :, 0, y0, x0], rtol=0, atol=0)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # nothing else changed
    torch.testing.assert_close(out[:, :, 0], latent[:, :, 0], rtol=0, atol=0)  # frame 0 untouched
    assert not torch.equal(out, latent)
    with pytest.raises(ValueError, match="latent frames"):
        track_condition(latent, tracks[:, :9], visible[:, :9])


def test_camera_grid_tracks_follow_the_flow_and_resample():
    from backend.wan.tracks import grid_tracks, job_tracks, resample_tracks

    F, H, W = 5, 32, 48
    flow = np.zeros((F, H, W, 2), np.float32)
    flow[..., 0] = np.arange(F)[:, None, None] * 3.0  # a pan: 3 px per frame to the right
    valid = np.ones((F, H, W), bool)
    tracks, vis = grid_tracks(flow, valid, step=16)
    assert tracks.shape == (6, F, 2)  # 2 x 3 grid points
    np.testing.assert_allclose(
        tracks[:, 0], [[8.5, 8.5], [24.5, 8.5], [40.5, 8.5], [8.5, 24.5], [24.5, 24.5], [40.5, 24.5]]
    )
    np.testing.assert_allclose(tracks[:, 4, 0] - tracks[:, 0, 0], 12.0)
    assert not vis[2, 4] and vis[2, 2]  # 40.5 + 12 leaves the 48 px image
    drag = np.zeros((1, F, 2), np.float32)
    c2w, K = np.tile(np.eye(4), (F, 1, 1)), np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1.0]])
    depth = np.ones((F, H, W), np.float32)  # the unified flow's depth: everything in front, one plane
    both, both_vis = job_tracks(drag, flow, depth, 9, K=K, c2w=c2w, depth=None)
    assert both.shape == (7, 9, 2) and both_vis.shape == (7, 9)
    np.testing.assert_allclose(both[1:, 2, 0] - both[1:, 0, 0], 3.0)  # frame 2 of 9 = frame 1 of 5
    same, _ = resample_tracks(tracks, vis, F)
    np.testing.assert_array_equal(same, tracks)


def test_ttm_indices_defaults_and_checks():
    assert ttm_indices("wan", 50) == (3, 7) and ttm_indices("cogvideox", 50) == (4, 9)
    assert ttm_indices("wan", 40) == (2, 6)  # scaled to the step count
    assert ttm_indices("wan", 50, 2, 5) == (2, 5)  # the authors' camera-control setting
    for bad in ((5, 4), (50, 50), (2, 51)):
        with pytest.raises(ValueError, match="tweak_index"):
            ttm_indices("wan", 50, *bad)


def test_coverage_and_latent_masks():
    F, H, W = 9, 16, 24
    flow = np.zeros((F, H, W, 2), np.float32)
    flow[..., 0] = np.arange(F)[:, None, None] * 2.0  # everything moves right: a hole opens on the left
    cov = coverage_mask(flow)
    assert cov[0].all() and not cov[4, :, :8].any() and cov[4, :, 8:].all()
    m = latent_mask(cov, 3, 2, 3)
    assert m.shape == (3, 2, 3) and m[0].all()
    # latent frame 1 covers pixel frames 1..4 (hole up to x = 8 at frame 4): its first cell column is out
    np.testing.assert_array_equal(m[1], [[0, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(m[2], [[0, 0, 1], [0, 0, 1]])  # frames 5..8: the hole reaches 16 px
