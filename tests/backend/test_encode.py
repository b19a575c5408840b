"""The per-frame conversions for the encoders (backend/outputs.py, compiled in
backend/output_kernel.py), which the frame threads run so that the writing thread only writes:
RGB -> YUV 4:2:0 for x264, and flow.npz's float16 frames with their range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend import flow_file, mp4, outputs

needs_kernel = pytest.mark.skipif(outputs._output_kernel() is None, reason="numba is not installed")


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colours, sharp edges and the extremes (black, white, pure primaries)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(7 * x + 3 * y), np.cos(5 * y - 2 * x), np.sin(11 * x * y)], -1)
    img = ((img + 1) * 127.5).astype(np.uint8)
    img[: h // 4, : w // 4] = rng.integers(0, 256, (h // 4, w // 4, 3))
    for k, colour in enumerate([(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        img[h // 2 : h // 2 + 8, 8 * k : 8 * k + 8] = colour
    return img


def _bt601(img: np.ndarray) -> np.ndarray:
    """An independent float64 reference: BT.601 limited range, chroma of each 2x2 block's mean."""
    f = img.astype(np.float64)
    H, W, _ = f.shape
    m = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255
    y = f @ m[0] + 16
    block = f.reshape(H // 2, 2, W // 2, 2, 3).mean((1, 3))
    u, v = block @ m[1] + 128, block @ m[2] + 128
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(H * 3 // 2, W)


def _swscale(img: np.ndarray) -> np.ndarray:
    import av

    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p").to_ndarray()


@needs_kernel
def test_yuv420_is_bt601_limited_range_with_block_mean_chroma():
    img = _picture(48, 64)
    ours = outputs.to_yuv420(img)
    assert ours.shape == (72, 64) and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.float64) - _bt601(img))
    assert diff.max() <= 0.52  # rounded to nearest, with 15-bit coefficients
    y = ours[:48]
    assert y[24:32, 0:8].max() == 16 and y[24:32, 8:16].min() == 235  # black and white, limited range


@needs_kernel
def test_yuv420_is_what_swscale_makes_of_the_frame():
    """The frames in video.mp4 do not depend on which thread converted them: our planes match
    swscale's (PyAV's conversion, used without numba) to 1 level in Y and in flat colour, and the
    round trip through swscale's decoder conversion is as faithful as swscale's own."""
    av = pytest.importorskip("av")
    img = _picture(48, 64, seed=1)
    ours, theirs = outputs.to_yuv420(img).astype(int), _swscale(img).astype(int)
    assert np.abs(ours[:48] - theirs[:48]).max() <= 1
    # Flat 8x8 patches: the chroma filter cannot matter there.
    u, v = (p.reshape(24, 32) for p in np.split(ours[48:].ravel(), 2))
    su, sv = (p.reshape(24, 32) for p in np.split(theirs[48:].ravel(), 2))
    patches = (slice(13, 15), slice(1, 19))  # rows 26-29, columns 2-37 of the frame, inside the patches
    assert np.abs(u[patches] - su[patches]).max() <= 1 and np.abs(v[patches] - sv[patches]).max() <= 1

    def psnr(planes):
        back = av.VideoFrame.from_ndarray(planes.astype(np.uint8), format="yuv420p").reformat(format="rgb24")
        mse = np.mean((back.to_ndarray().astype(np.float64) - img) ** 2)
        return 10 * np.log10(255.0**2 / mse)

    assert psnr(ours) >= psnr(theirs) - 0.2


def test_video_from_converted_frames_decodes_like_the_rgb_one(tmp_path):
    """Mp4Writer takes RGB frames or to_yuv420's planes; the two videos are as faithful."""
    av = pytest.importorskip("av")
    frames = [np.roll(_picture(48, 64, seed=2), 3 * i, axis=1) for i in range(4)]
    decoded = {}
    for kind in ("rgb", "yuv"):
        writer = mp4.Mp4Writer(tmp_path / f"{kind}.mp4", 64, 48, 12.0)
        for frame in frames:
            yuv = outputs.to_yuv420(frame) if kind == "yuv" else None
            writer.write(frame if yuv is None else yuv)
        writer.close()
        with av.open(str(tmp_path / f"{kind}.mp4")) as container:
            decoded[kind] = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded["rgb"].shape == decoded["yuv"].shape == (4, 48, 64, 3)
    # x264 decides differently on the two, so compare each with the frames (a noise patch makes
    # the error large): as faithful.
    err = {k: np.abs(d.astype(int) - np.stack(frames)).mean() for k, d in decoded.items()}
    assert err["yuv"] <= err["rgb"] + 0.25 and err["yuv"] < 10, err


def _flows() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    plain = (rng.standard_normal((40, 56, 2)) * 25).astype(np.float32)
    odd = plain.copy()
    odd[3, 4] = [np.nan, 1.0]
    odd[5, 6] = [1.0, np.inf]
    odd[7, 8] = [-np.inf, np.nan]
    huge = plain.copy()
    huge[9, 9] = [1e5, -2e5]  # beyond float16: clipped in the file, counted in the range
    return [plain, odd, huge, np.zeros((40, 56, 2), np.float32), np.full((40, 56, 2), np.nan, np.float32)]


@pytest.mark.parametrize("case", range(5))
def test_flow_range_is_the_largest_finite_squared_magnitude(case, monkeypatch):
    flow = _flows()[case]
    sq = flow[..., 0].astype(np.float64) ** 2 + flow[..., 1].astype(np.float64) ** 2
    finite = np.isfinite(sq)
    expected = float(sq[finite].max()) if finite.any() else 0.0
    got, all_finite = outputs.flow_square_max(flow)
    assert all_finite == bool(np.isfinite(flow).all())
    assert got == pytest.approx(expected, rel=1e-6)
    monkeypatch.setattr(outputs, "_output_kernel", lambda: None)  # the numpy path: the same float32 value
    assert outputs.flow_square_max(flow) == (got, all_finite)


def test_flow_frames_encoded_elsewhere_write_the_same_file(tmp_path):
    """FlowFileWriter.encode (what the frame threads run) then write gives write(flow)'s bytes and
    range, clips included."""
    flows = _flows()
    paths = [tmp_path / "direct.npz", tmp_path / "encoded.npz"]
    writers = [flow_file.FlowFileWriter(p, len(flows), 40, 56) for p in paths]
    for flow in flows:
        writers[0].write(flow)
        writers[1].write(flow_file.FlowFileWriter.encode(flow))
    for w in writers:
        w.close()
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert writers[0].max_magnitude == writers[1].max_magnitude == pytest.approx(np.hypot(1e5, 2e5), rel=1e-6)
    back = np.stack(list(flow_file.read_flow_frames(paths[1])))
    assert np.abs(back[np.isfinite(back)]).max() == flow_file.FLOW_SAVE_LIMIT


def _written(tmp_path, flows) -> np.ndarray:
    """The flows through FlowFileWriter, as read_flow_frames reads them back (float32)."""
    writer = flow_file.FlowFileWriter(tmp_path / "flow.npz", len(flows), *flows[0].shape[:2])
    for flow in flows:
        writer.write(flow)
    writer.close()
    return np.stack(list(flow_file.read_flow_frames(tmp_path / "flow.npz")))


def test_flow_frames_reads_any_frame_as_stored(tmp_path):
    """FlowFrames (the memory map the flow video is read through): every frame, in any order, the
    stored float16 bits (read_flow_frames, which checks the zip's CRC, cast exactly), read-only;
    the same for the core's save_flow file; out of range and compressed files refused."""
    from blender_animate.flowviz import save_flow

    flows = _flows()
    back = _written(tmp_path, flows)
    with flow_file.FlowFrames(tmp_path / "flow.npz") as frames:
        assert len(frames) == len(flows) and frames.shape == (5, 40, 56, 2) and frames.dtype == np.float16
        for f in (3, 0, 4, 1, 2):
            half = frames.read(f)
            assert not half.flags.writeable
            np.testing.assert_array_equal(half.astype(np.float32), back[f])
        with pytest.raises(IndexError):
            frames.read(5)
    save_flow(tmp_path / "core.npz", back)
    with flow_file.FlowFrames(tmp_path / "core.npz") as frames:
        np.testing.assert_array_equal(frames.read(4).astype(np.float32), back[4])
    save_flow(tmp_path / "packed.npz", back, compress=True)
    with pytest.raises(ValueError, match="compressed"):
        flow_file.FlowFrames(tmp_path / "packed.npz")


@pytest.mark.parametrize("compiled", [True, False])
def test_flow_colours_from_float16_are_those_of_the_cast(tmp_path, compiled, monkeypatch):
    """color_flow of a stored float16 frame (the compiled kernel reads it in place through a
    65536-entry table) gives the colours of the exact float32 cast: NaN, inf and the clip included."""
    if compiled and outputs._output_kernel() is None:
        pytest.skip("numba is not installed")
    if not compiled:
        monkeypatch.setattr(outputs, "_output_kernel", lambda: None)
    lut = outputs.flow_lut(60.0)
    for flow in _flows():
        half = flow_file.FlowFileWriter.encode(flow).half
        np.testing.assert_array_equal(
            outputs.color_flow(half, lut), outputs.color_flow(half.astype(np.float32), lut)
        )
    # The table against IEEE 754 binary16 by its fields: sign, 5-bit exponent (bias 15), 10-bit fraction.
    bits = np.arange(65536)
    sign, exp, frac = np.where(bits >> 15, -1.0, 1.0), (bits >> 10) & 31, bits & 1023
    value = sign * np.where(exp == 0, frac / 1024 * 2.0**-14, (1 + frac / 1024) * 2.0 ** (exp - 15.0))
    value[exp == 31] = np.where(frac[exp == 31] == 0, sign[exp == 31] * np.inf, np.nan)
    np.testing.assert_array_equal(outputs._half_table(), value.astype(np.float32))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the RSS from /proc")
def test_released_flow_frames_leave_the_process(tmp_path):
    """Frames read through FlowFrames stay resident until released (a 1080p x 97 flow file would
    add 0.8 GB to the run's peak RSS); released, the file's pages leave this process."""

    def rss_file_kib() -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("RssFile"))
        return int(line.split()[1])

    flow = np.ones((384, 512, 2), np.float32)  # 768 KiB a frame in the file
    writer = flow_file.FlowFileWriter(tmp_path / "flow.npz", 16, 384, 512)
    for f in range(16):
        writer.write(flow * f)
    writer.close()
    grown = {}
    for release in (False, True):
        with flow_file.FlowFrames(tmp_path / "flow.npz") as frames:
            before = rss_file_kib()
            for f in range(16):
                assert float(frames.read(f)[::8, ::8].max()) == f  # touches every page
                if release:
                    frames.release(f)
            grown[release] = rss_file_kib() - before
    assert grown[False] > 8 * 768 and grown[True] < 2 * 768, grown
