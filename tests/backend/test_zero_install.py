"""The numpy-and-Pillow path: OpenCV, scipy, PyAV, torch and numba hidden from a real generator process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from blender_animate.flowviz import load_flow
from tests.backend.jobs import ROOT, backend_env, parse_events, run_backend


def test_the_hiding_works(hide_optional):
    for module in ("cv2", "scipy", "av", "torch", "numba"):
        r = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            env=backend_env([hide_optional]),
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert r.returncode == 1 and "hidden by the test" in r.stderr


def test_preview_with_numpy_and_pillow_only(make_job, hide_optional):
    job = make_job(num_frames=5, camera="pan", width=64, height=48)
    r = run_backend("run", job, extra_paths=[hide_optional])
    assert r.returncode == 0, r.stderr
    events = parse_events(r.stdout)
    done = events[-1]
    assert done["event"] == "done"
    assert done["outputs"]["video"] is None and done["outputs"]["flow_video"] is None
    assert done["outputs"]["flow_frames"] == "out/flow_frames"
    assert any("PyAV is not installed" in e["message"] for e in events if e["event"] == "warning")
    out = job / "out"
    assert not list(out.glob("*.mp4"))
    for folder in ("frames", "flow_frames"):
        names = sorted(p.name for p in (out / folder).iterdir())
        assert names == [f"{i:04d}.png" for i in range(5)]
    last = np.asarray(Image.open(out / "frames/0004.png"))
    assert last.shape == (48, 64, 3)
    # The pan reveals the right edge; the numpy filler fills it (the texture has no black).
    assert last.max(axis=-1).min() > 20
    assert np.asarray(Image.open(out / "flow_frames/0004.png")).std() > 0
    assert load_flow(out / "flow.npz").shape == (5, 48, 64, 2)
    result = json.loads((out / "result.json").read_text())
    assert result["info"]["fill"] == "background"
    assert result["info"]["splat_engine"] == "numpy"


def test_reference_video_without_opencv_is_refused(make_job, hide_optional):
    job = make_job(num_frames=3, reference_video="motion.mp4")
    (job / "motion.mp4").write_bytes(b"not looked at")
    r = run_backend("run", job, extra_paths=[hide_optional])
    assert r.returncode == 1
    error = parse_events(r.stdout)[-1]
    assert error["kind"] == "missing_dependency"
    assert "OpenCV" in error["message"]
    assert "backend/requirements-generator.txt" in error["hint"] and "Preferences" in error["hint"]
    assert not (job / "out").exists()


def test_doctor_without_torch(hide_optional):
    r = run_backend("doctor", extra_paths=[hide_optional])
    assert r.returncode == 0, r.stderr
    assert "torch is not installed" in r.stdout
    assert "no OpenCV: reference videos are refused" in r.stdout
    assert "no numba: the splatting runs on numpy" in r.stdout
