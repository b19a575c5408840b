"""Plücker embedding against a per-pixel transcription of CameraCtrl's formula, and its invariants."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from blender_animate.camera import CameraError, rescale_intrinsics
from blender_animate.plucker import plucker_embedding


def random_cameras(seed, n, rotation_only=False):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=rng).as_matrix()
    if not rotation_only:
        c2w[:, :3, 3] = rng.normal(size=(n, 3))
    K = np.zeros((n, 3, 3))
    K[:, 0, 0] = rng.uniform(5, 9, n)
    K[:, 1, 1] = rng.uniform(5, 9, n)
    K[:, 0, 2] = rng.uniform(2, 5, n)
    K[:, 1, 2] = rng.uniform(1, 4, n)
    K[:, 2, 2] = 1
    return c2w, K


def reference(c2w, K, H, W):
    """A direct per-pixel transcription of the formula: explicit loops, explicit cross product."""
    out = np.zeros((len(c2w), 6, H, W))
    for f in range(len(c2w)):
        rel = np.linalg.inv(c2w[0]) @ c2w[f]
        fx, fy, cx, cy = K[f, 0, 0], K[f, 1, 1], K[f, 0, 2], K[f, 1, 2]
        ox, oy, oz = rel[:3, 3]
        for j in range(H):
            for i in range(W):
                d = np.array([(i + 0.5 - cx) / fx, (j + 0.5 - cy) / fy, 1.0])
                d = d / np.sqrt(d @ d)
                dx, dy, dz = rel[:3, :3] @ d
                m = (oy * dz - oz * dy, oz * dx - ox * dz, ox * dy - oy * dx)
                out[f, :, j, i] = [*m, dx, dy, dz]
    return out


def test_matches_per_pixel_transcription():
    c2w, K = random_cameras(0, 4)
    emb = plucker_embedding(c2w, K, 5, 7)
    assert emb.shape == (4, 6, 5, 7) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, reference(c2w, K, 5, 7), atol=2e-6)


def test_absolute_poses_when_not_relative():
    c2w, K = random_cameras(1, 2)
    emb = plucker_embedding(c2w, K, 4, 6, relative=False)
    # Frame 0 is no longer the identity: its origin is the camera centre, its moment o x d.
    ref = reference(np.concatenate([np.eye(4)[None], c2w]), np.concatenate([K[:1], K]), 4, 6)[1:]
    np.testing.assert_allclose(emb, ref, atol=2e-6)


def test_invariants():
    c2w, K = random_cameras(2, 5)
    emb = plucker_embedding(c2w, K[0], 6, 8).astype(np.float64)  # one K for every frame
    moment, d = emb[:, :3], emb[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)  # unit directions
    np.testing.assert_allclose((moment * d).sum(axis=1), 0.0, atol=1e-5)  # Plücker constraint m . d = 0
    assert np.abs(moment[0]).max() < 1e-7  # frame 0 is at the origin after relativisation
    # Frame 0, pixel centre on the optical axis looks along +z.
    Kc = np.array([[4.0, 0, 4], [0, 4, 3], [0, 0, 1]])
    e0 = plucker_embedding(np.eye(4)[None], Kc, 6, 8)
    np.testing.assert_allclose(e0[0, 3:, 2:4, 3:5].mean(axis=(1, 2)), [0, 0, 1], atol=0.02)
    assert e0[0, 3, 0, 7] > 0 and e0[0, 4, 5, 0] > 0  # right column looks +x, bottom row +y


def test_pure_rotation_has_zero_moments():
    c2w, K = random_cameras(3, 4, rotation_only=True)
    c2w[:, :3, 3] = [1.0, 2.0, 3.0]  # every frame at the same centre: rotation relative to frame 0 only
    emb = plucker_embedding(c2w, K, 5, 5)
    assert np.abs(emb[:, :3]).max() < 1e-5
    assert np.abs(emb[1:, 3:] - emb[:1, 3:]).max() > 0.1  # but the directions turn


def test_float16_output_and_reduced_size():
    c2w, K = random_cameras(4, 3)
    e32 = plucker_embedding(c2w, K, 6, 10)
    e16 = plucker_embedding(c2w, K, 6, 10, dtype=np.float16)
    assert e16.dtype == np.float16
    np.testing.assert_allclose(e16.astype(np.float32), e32, atol=3e-3, rtol=1e-3)
    # The reduced-size embedding is the full formula on the coarse grid with K rescaled.
    Ks = rescale_intrinsics(K, (10, 6), (5, 3))
    np.testing.assert_allclose(plucker_embedding(c2w, Ks, 3, 5), reference(c2w, Ks, 3, 5), atol=2e-6)


def test_errors():
    c2w, K = random_cameras(5, 2)
    with pytest.raises(CameraError, match="float32 or float16"):
        plucker_embedding(c2w, K, 4, 4, dtype=np.float64)
    with pytest.raises(CameraError, match=r"\(2, 3, 3\)"):
        plucker_embedding(c2w, K[:1], 4, 4)
    bad = c2w.copy()
    bad[1, 0, 0] = 3
    with pytest.raises(CameraError, match="orthonormal"):
        plucker_embedding(bad, K, 4, 4)
