"""Colour coding, resizing and the flow file format."""

import numpy as np
import pytest

from blender_animate.flowviz import color_wheel, flow_to_color, load_flow, resize_flow, save_flow


def test_color_wheel_is_middlebury():
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])
    np.testing.assert_array_equal(wheel[1], [255, 17, 0])  # floor(255 * 1 / 15)
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow starts the second ramp
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])
    np.testing.assert_array_equal(wheel[25], [0, 255, 255])
    np.testing.assert_array_equal(wheel[36], [0, 0, 255])
    np.testing.assert_array_equal(wheel[49], [255, 0, 255])
    np.testing.assert_array_equal(wheel[54], [255, 0, 255 - 212])


def test_flow_to_color_directions_and_global_normalisation():
    flow = np.zeros((2, 4, 4, 2), np.float32)
    flow[0, 0, 0] = [10, 0]  # right, the largest magnitude of all frames
    flow[0, 0, 1] = [0, 10]  # down
    flow[0, 0, 2] = [-10, 0]  # left
    flow[0, 0, 3] = [0, -10]  # up
    flow[1, 0, 0] = [5, 0]  # half of the maximum, in another frame
    img = flow_to_color(flow)
    assert img.shape == (2, 4, 4, 3) and img.dtype == np.uint8
    assert img[0, 1, 1].tolist() == [255, 255, 255]  # no motion is white
    assert img[0, 0, 0].tolist() == [255, 0, 0]  # right is red, fully saturated
    r, g, b = img[0, 0, 1].astype(int)
    assert r > 200 and g > 150 and b == 0  # down: yellow/orange
    r, g, b = img[0, 0, 2].astype(int)
    assert r == 0 and g > 150 and b == 255  # left: cyan-blue
    r, g, b = img[0, 0, 3].astype(int)
    assert b == 255 and g == 0 and 0 < r < 128  # up: blue-violet
    # One normalisation across frames: half the motion is half as saturated (not re-normalised).
    assert img[1, 0, 0].tolist() == [255, 127, 127]
    assert flow_to_color(flow[1])[0, 0].tolist() == [255, 0, 0]  # alone, it would be saturated
    # An explicit maximum: larger motion is darkened instead of saturated.
    assert flow_to_color(flow[0], max_magnitude=5.0)[0, 0].tolist() == [191, 0, 0]
    nan = flow[0].copy()
    nan[2, 2] = np.nan
    assert flow_to_color(nan)[2, 2].tolist() == [0, 0, 0]


def test_flow_to_color_matches_the_reference_algorithm():
    # The published Middlebury/flow_vis procedure, transcribed plainly in float64.
    rng = np.random.default_rng(3)
    flow = rng.normal(0, 4, (2, 9, 11, 2))
    wheel = color_wheel() / 255
    ncols = len(wheel)
    rad = np.hypot(flow[..., 0], flow[..., 1]) / np.hypot(flow[..., 0], flow[..., 1]).max()
    a = np.arctan2(-flow[..., 1], -flow[..., 0]) / np.pi
    fk = (a + 1) / 2 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = k0 + 1
    k1[k1 == ncols] = 0
    f = fk - k0
    ref = np.zeros(flow.shape[:-1] + (3,))
    for c in range(3):
        col = (1 - f) * wheel[k0, c] + f * wheel[k1, c]
        col = np.where(rad <= 1, 1 - rad * (1 - col), col * 0.75)
        ref[..., c] = np.floor(255 * col)
    got = flow_to_color(flow.astype(np.float32)).astype(int)
    assert np.abs(got - ref).max() <= 1  # float32 against float64 rounding at the floor


def test_resize_flow_scales_values_and_keeps_linear_fields():
    H, W = 12, 16
    v, u = np.mgrid[0:H, 0:W] + 0.5
    # A linear field u_x = 0.1 x + 2, u_y = -0.2 y: resized to half size, in new pixels, the field at a
    # new pixel centre x' is s * (0.1 * x' / s + 2) = 0.1 x' + 2 s (pixel-centre alignment).
    flow = np.stack([0.1 * u + 2, -0.2 * v], -1).astype(np.float32)[None]
    small = resize_flow(flow, 6, 8)
    v2, u2 = np.mgrid[0:6, 0:8] + 0.5
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(small[..., 0][inner], (0.1 * u2 + 1)[inner[1:]][None], atol=1e-5)
    np.testing.assert_allclose(small[..., 1][inner], (-0.2 * v2)[inner[1:]][None], atol=1e-5)
    big = resize_flow(np.full((H, W, 2), [1.0, 3.0], np.float32), 24, 48)
    assert big.shape == (24, 48, 2)
    np.testing.assert_allclose(big[..., 0], 3.0)
    np.testing.assert_allclose(big[..., 1], 6.0)
    with pytest.raises(ValueError, match="shape"):
        resize_flow(np.zeros((4, 4, 3)), 2, 2)


@pytest.mark.parametrize("w_in, w_out", [(40, 100), (600, 1000)])  # the matrix and the gather paths
def test_resize_flow_linear_field_along_columns(w_in, w_out):
    u = np.arange(w_in) + 0.5
    flow = np.zeros((2, 3, w_in, 2), np.float32)
    flow[..., 0] = 0.05 * u + 1
    out = resize_flow(flow, 3, w_out)
    s = w_out / w_in
    u2 = np.arange(w_out) + 0.5
    inner = slice(int(s) + 1, -int(s) - 1)  # away from the clamped borders
    np.testing.assert_allclose(out[0, 1, inner, 0], (0.05 * u2 + s)[inner], rtol=1e-5)
    assert (out[..., 1] == 0).all()


def test_save_and_load_flow(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 20, (3, 8, 10, 2)).astype(np.float32)
    save_flow(tmp_path / "f.npz", flow)
    with np.load(tmp_path / "f.npz") as z:
        assert z["flow"].dtype == np.float16
    back = load_flow(tmp_path / "f.npz", shape=(3, 8, 10))
    assert back.dtype == np.float32 and back.shape == flow.shape
    np.testing.assert_allclose(back, flow, rtol=1e-3, atol=1e-3)
    save_flow(tmp_path / "g.npz", flow, float16=False, compress=True)
    np.testing.assert_array_equal(load_flow(tmp_path / "g.npz", shape=(None, 8, 10, 2)), flow)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "g.npz"]  # no temporary left over


@pytest.mark.parametrize(
    "arrays, shape, message",
    [
        ({"flow": np.zeros((2, 4, 4, 2), np.float32)}, (2, 4, 5), "expected"),
        ({"flow": np.zeros((4, 4, 2), np.float32)}, None, "shape"),
        ({"flow": np.zeros((2, 4, 4, 2), np.int16)}, None, "float16 or float32"),
        ({"flow": np.full((1, 2, 2, 2), np.nan, np.float32)}, None, "NaN"),
        ({"other": np.zeros(3)}, None, "no 'flow' array"),
        ({"flow": np.array([{"a": 1}], dtype=object)}, None, "pickle"),
    ],
)
def test_load_flow_errors(tmp_path, arrays, shape, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_flow(tmp_path / "bad.npz", shape=shape)


def test_load_flow_unreadable_and_save_errors(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not"):
        load_flow(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="float16 range"):
        save_flow(tmp_path / "big.npz", np.full((1, 2, 2, 2), 1e5, np.float32))
    with pytest.raises(ValueError, match="shape"):
        save_flow(tmp_path / "x.npz", np.zeros((2, 2, 2)))
