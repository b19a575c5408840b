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
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert {"flow", "render", "write"} <= stages
    for e in events:
        if e["event"] == "progress":
            assert 0 <= e["step"] <= e["total"]
    outputs = events[-1]["outputs"]
    assert outputs == {
        "video": "out/video.mp4",
        "frames": "out/frames",
        "flow": "out/flow.npz",
        "flow_video": "out/flow.mp4",
        "result": "out/result.json",
    }

    frames = sorted((job / "out/frames").iterdir())
    assert [p.name for p in frames] == [f"{i:04d}.png" for i in range(6)]
    first = np.asarray(Image.open(frames[0]))
    assert first.shape == (48, 64, 3)
    np.testing.assert_array_equal(first, np.asarray(Image.open(job / "reference.png").convert("RGB")))
    last = np.asarray(Image.open(frames[-1]))
    assert np.abs(last.astype(int) - first).mean() > 5  # the dolly moved something

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
    # H.264 is lossy; frame 0 decodes close to the reference.
    with av.open(str(job / "out/video.mp4")) as container:
        f0 = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(f0.astype(int) - first).mean() < 12

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
