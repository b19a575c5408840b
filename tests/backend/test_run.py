"""`python -m backend run JOB` end to end with the full environment: events, files, video read back."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from blender_animate.flowviz import load_flow
from tests.backend.jobs import parse_events, run_backend, write_video


def test_preview_run_writes_every_output(make_job):
    job = make_job(width=64, height=48, num_frames=6, camera="dolly", fps=12.0)
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    events = parse_events(r.stdout)  # every stdout line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert events[0]["mode"] == "preview" and events[0]["pid"] > 0
    assert (events[0]["width"], events[0]["height"]) == (64, 48)
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert {"flow", "render", "write"} <= stages
    for e in events:
        if e["event"] == "progress":
            assert 0 <= e["step"] <= e["total"]
    outputs = events[-1]["outputs"]
    assert outputs == {
        "video": "out/video.mp4",
        "frames": None,  # PNG frames beside the mp4 only when asked (ANIMATE_ANYTHING_PNG=1)
        "flow": "out/flow.npz",
        "flow_video": "out/flow.mp4",
        "result": "out/result.json",
    }
    assert not (job / "out/frames").exists()
    first = np.asarray(Image.open(job / "reference.png").convert("RGB"))

    flow = load_flow(job / "out/flow.npz", shape=(6, 48, 64))
    assert np.all(flow[0] == 0) and np.abs(flow[-1]).max() > 1

    import av

    for name in ("video.mp4", "flow.mp4"):
        with av.open(str(job / "out" / name)) as container:
            stream = container.streams.video[0]
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            assert stream.codec_context.name == "h264"
            assert Fraction(stream.average_rate) == 12
        assert len(decoded) == 6
        assert decoded[0].shape == (48, 64, 3)
    # H.264 is lossy; frame 0 decodes close to the reference, and the dolly moved something.
    with av.open(str(job / "out/video.mp4")) as container:
        video = [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]
    assert np.abs(video[0] - first).mean() < 12
    assert np.abs(video[-1] - first).mean() > 5

    result = json.loads((job / "out/result.json").read_text())
    assert result["outputs"] == outputs
    assert result["num_frames"] == 6 and result["fps"] == 12.0
    assert result["info"]["depth"] == "depth.npy"
    assert not list(job.glob(".out-*"))


def test_a_new_run_replaces_the_previous_output(make_job):
    job = make_job(num_frames=3)
    (job / "out").mkdir()
    (job / "out" / "result.json").write_text('{"stale": true}')
    (job / ".out-partial-999999").mkdir()  # left by a killed run whose process is gone
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    assert "stale" not in json.loads((job / "out/result.json").read_text())
    assert not (job / ".out-partial-999999").exists()


def test_fallback_depth_warns_and_runs(make_job):
    job = make_job(num_frames=3, depth=None, camera="pan")
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    warnings = [e["message"] for e in parse_events(r.stdout) if e["event"] == "warning"]
    assert any("no depth map" in w for w in warnings)
    result = json.loads((job / "out/result.json").read_text())
    assert result["info"]["depth"] == "fallback plane"
    assert any("no depth map" in w for w in result["warnings"])


def test_reference_video_motion_is_transferred(make_job, tmp_path):
    """A reference video of a texture sliding right 2 px a frame moves a static-camera preview."""
    pytest.importorskip("cv2")
    from tests.backend.jobs import texture

    big = texture(48, 96)
    video = np.stack([np.roll(big, 2 * i, axis=1)[:, 16:80] for i in range(5)])
    job = make_job(num_frames=5, camera="static", reference_video="motion.mp4", depth="flat")
    write_video(job / "motion.mp4", video)
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    flow = load_flow(job / "out/flow.npz")
    # Chained DIS flow of the video: ~8 px right by the last frame, ~0 vertically (away from borders).
    centre = flow[-1, 12:36, 16:48]
    assert abs(float(np.median(centre[..., 0])) - 8.0) < 1.0
    assert abs(float(np.median(centre[..., 1]))) < 0.5
    assert json.loads((job / "out/result.json").read_text())["info"]["reference_video"]["frames_used"] == 5


def test_flow_colours_match_the_core_up_to_quantisation():
    from backend.outputs import flow_colors
    from blender_animate.flowviz import flow_to_color

    rng = np.random.default_rng(1)
    flow = (rng.standard_normal((3, 16, 20, 2)) * 30).astype(np.float32)
    flow[0] = 0
    flow[2, 0, 0] = np.nan
    ours = flow_colors(flow).astype(int)
    core = flow_to_color(flow).astype(int)
    assert np.abs(ours - core).max() <= 4  # 1/256 of the largest magnitude
    assert (ours[2, 0, 0] == 0).all() and (ours[0] == core[0]).all()


def test_compiled_flow_colours_are_the_numpy_ones(monkeypatch):
    """color_flow's numba kernel (where numba is installed) gives the numpy path's bytes: random
    flow, exact half steps (round half to even), beyond the table (clipped), NaN and inf (black)."""
    from backend import outputs

    if outputs._output_kernel() is None:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(2)
    flow = (rng.standard_normal((48, 64, 2)) * 30).astype(np.float32)
    lut = outputs.flow_lut(40.0)
    step = 40.0 / outputs.LUT_RADIUS
    flow[0, :8, 0] = (np.arange(8) + 0.5) * step  # half steps
    flow[1, :4] = [[1e4, -1e4], [np.nan, 1.0], [1.0, np.inf], [-np.inf, np.nan]]
    compiled = outputs.color_flow(flow, lut)
    monkeypatch.setattr(outputs, "_output_kernel", lambda: None)
    reference = outputs.color_flow(flow, lut)
    np.testing.assert_array_equal(compiled, reference)
    assert (compiled[1, 1:4] == 0).all() and compiled[1, 0].any()


def test_streamed_outputs_equal_the_whole_video_preview(make_job, monkeypatch):
    """The run streams (each frame's flow, splat, fill and encode, then the next): its PNG frames
    (asked for with ANIMATE_ANYTHING_PNG=1) are exactly the frames of the whole-video pipeline
    (stage 1 for all frames at once, preview_flow, then every frame), and flow.npz is that flow
    in float16."""
    from backend.context import load_context
    from backend.modes.preview import preview_flow, render_frame, resolve_method

    F, H, W = 7, 48, 64
    track = np.stack([np.linspace(30, 40, F), np.linspace(20, 26, F)], -1)[None].astype(np.float32)
    job = make_job(width=W, height=H, num_frames=F, camera="dolly", tracks=track)
    monkeypatch.setenv("ANIMATE_ANYTHING_PNG", "1")
    r = run_backend("run", job)
    assert r.returncode == 0, r.stderr
    outputs = parse_events(r.stdout)[-1]["outputs"]
    assert outputs["frames"] == "out/frames" and outputs["video"] == "out/video.mp4"

    ctx = load_context(job)
    whole = preview_flow(ctx)
    method = resolve_method("auto", have_depth=True)
    for f in range(F):
        png = np.asarray(Image.open(job / "out/frames" / f"{f:04d}.png"))
        expected = (
            ctx.reference
            if f == 0
            else render_frame(ctx.reference, whole.flow[f], whole.depth[f], whole.rim, method)[0]
        )
        np.testing.assert_array_equal(png, expected, err_msg=f"frame {f}")
    saved = load_flow(job / "out/flow.npz", shape=(F, H, W))
    np.testing.assert_array_equal(saved, whole.flow.astype(np.float16).astype(np.float32))
    result = json.loads((job / "out/result.json").read_text())
    assert result["info"]["hole_fraction_max"] >= result["info"]["hole_fraction_mean"] > 0
    from backend.preview.splat import compiled_kernel

    assert result["info"]["splat_engine"] == ("numba" if compiled_kernel() else "numpy")
    assert {"frames", "flow_video"} <= set(result["timings_s"])


def test_a_streamed_mode_result_and_whole_arrays_write_the_same_files(make_job, tmp_path):
    """write_outputs takes whole arrays (modes guided, animateanything) and streams alike."""
    from backend.context import load_context
    from backend.flow_file import read_flow_frames
    from backend.modes import FrameStream, ModeResult
    from backend.runner import write_outputs

    F, H, W = 4, 48, 64
    job = make_job(width=W, height=H, num_frames=F)
    ctx = load_context(job)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    flow = (rng.standard_normal((F, H, W, 2)) * 20).astype(np.float32)
    whole = write_outputs(tmp_path / "whole", ModeResult(frames, flow), ctx)
    stream = FrameStream(F, lambda f: (frames[f], flow[f]), has_flow=True, workers=2)
    streamed = write_outputs(tmp_path / "stream", ModeResult(stream), ctx)
    assert whole == streamed
    for name in ("flow.npz", "video.mp4", "flow.mp4"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "stream" / name).read_bytes(), name
    back = np.stack(list(read_flow_frames(tmp_path / "stream" / "flow.npz")))
    np.testing.assert_array_equal(back, flow.astype(np.float16).astype(np.float32))


def test_float16_casts_are_numpys_bit_for_bit():
    """flow.npz's float16 casts (OpenCV's SIMD conversion where it imports) give numpy's bits:
    normal, subnormal, zero and negative zero, the largest half, inf and NaN (NaN as NaN)."""
    from backend import flow_file

    rng = np.random.default_rng(5)
    a = np.concatenate(
        [
            rng.standard_normal(20000) * 30,
            rng.standard_normal(2000) * 1e-6,  # float16 subnormals
            [0.0, -0.0, 65504.0, -65504.0, 6.1e-5, 5.96e-8, 1e-9, np.inf, -np.inf, np.nan],
        ]
    ).astype(np.float32)
    a = np.resize(a, (40, 280, 2))
    half = np.empty(a.shape, np.float16)
    flow_file.to_float16(a, half)
    ref = a.astype(np.float16)
    np.testing.assert_array_equal(half.view(np.uint16)[~np.isnan(ref)], ref.view(np.uint16)[~np.isnan(ref)])
    assert np.isnan(half[np.isnan(ref)]).all()
    back = flow_file.from_float16(ref)
    assert back.dtype == np.float32 and back.shape == a.shape
    np.testing.assert_array_equal(back, ref.astype(np.float32))  # NaN == NaN here


def test_cancel_stops_a_streamed_run_mid_stream(make_job):
    """A cancel file written at the first streamed frame stops the run within the usual time
    (exit 3, well under 5 s), before the last frame, with nothing that looks finished."""
    import time

    from tests.backend.jobs import start_backend

    F = 49
    job = make_job(width=320, height=240, num_frames=F, camera="dolly", step=0.04)
    proc = start_backend("run", job)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress" and events[-1]["stage"] == "render":
            break
    t0 = time.monotonic()
    (job / "cancel").write_text("stop\n")
    rest, _ = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    events += parse_events(rest)
    assert proc.returncode == 3 and events[-1]["kind"] == "cancelled", events[-1]
    assert elapsed < 5, f"took {elapsed:.2f} s to stop"
    rendered = [e["step"] for e in events if e["event"] == "progress" and e["stage"] == "render"]
    assert max(rendered) < F, "the stream was stopped before its last frame"
    assert not (job / "out").exists() and not list(job.glob(".out-partial-*"))


def test_a_stream_that_breaks_the_contract_is_an_internal_error(make_job, tmp_path):
    """Streamed frames are checked one by one as they come; the stream stops at the first bad one."""
    from backend.context import load_context
    from backend.errors import JobFailure
    from backend.modes import FrameStream, ModeResult
    from backend.runner import write_outputs

    job = make_job(num_frames=4)
    ctx = load_context(job)
    made = []

    def render(f):
        made.append(f)
        shape = (48, 64, 3) if f < 2 else (48, 60, 3)
        return np.zeros(shape, np.uint8), np.zeros((48, 64, 2), np.float32)

    result = ModeResult(FrameStream(4, render, has_flow=True)).check(4, 48, 64)
    with pytest.raises(JobFailure, match="frame 2") as err:
        write_outputs(tmp_path / "partial", result, ctx)
    assert err.value.kind == "internal" and made == [0, 1, 2]
    with pytest.raises(JobFailure, match="stream of 4 frames"):
        result.check(5, 48, 64)
