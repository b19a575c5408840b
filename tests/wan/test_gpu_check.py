"""benchmarks/gpu_check.py at tiny size on the CPU, so the GPU check cannot rot: every family builds,
is placed by its plan and runs its steps, the table and JSON come out; group offload, fp8 casting
and the VAE decode run too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_every_family_at_tiny_size(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--tiny",
            "--steps",
            "1",
            "--vae",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["family"] for r in rows] == [
        "cogvideox-1.0",
        "cogvideox-1.5",
        "wan-2.1",
        "wan-a14b",
        "wan-ti2v",
    ]
    for r in rows:
        assert "error" not in r and r["out_finite"] and r["step_s"] > 0, r
        assert r["plan_dict"]["device"] == "cpu" and r["denoise_estimate_gib"] > 0
    assert "| wan-ti2v | 64x64x9 |" in proc.stdout


def test_gpu_check_group_offload_and_fp8_placement_at_tiny_size(tmp_path):
    """The placements a 24 GB card gets (group offload of blocks, fp8 layerwise casting) run too."""
    out = tmp_path / "rows.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--steps", "1"]
    cmd += [
        "--families",
        "wan-2.1,cogvideox-1.0",
        "--offload",
        "group",
        "--fp8",
        "on",
        "--vae",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for r in json.loads(out.read_text()):
        assert "error" not in r and r["out_finite"] and r["vae_decode_s"] > 0, r
        assert r["plan_dict"]["offload"] == "group" and r["plan_dict"]["fp8"]
