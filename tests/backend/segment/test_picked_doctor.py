"""`python -m backend doctor` reports the optional models of a picked image."""

from __future__ import annotations

import json
import shutil

from blender_animate.addon.doctor_check import summarize
from tests.backend.jobs import run_backend


def test_doctor_reports_sam2_and_depth_anything_folders(tmp_path, tiny_sam, tiny_depth):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(tiny_sam, models / "sam2-tiny")
    shutil.copytree(tiny_depth, models / "depth-tiny")
    broken = models / "depth-bin"
    shutil.copytree(tiny_depth, broken)
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")

    r = run_backend("doctor", "--json", "--models", str(models), timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    names = {m["name"]: m for m in report["models"]}
    assert names["sam2-tiny"]["complete"] and "SAM 2" in names["sam2-tiny"]["use"]
    assert names["depth-tiny"]["complete"] and "Depth Anything" in names["depth-tiny"]["use"]
    assert not names["depth-bin"]["complete"]
    assert any("convert the weights to model.safetensors" in p for p in names["depth-bin"]["missing"])
    picked = report["picked_images"]
    assert picked["segment"]["usable"] and picked["segment"]["class"] == "Sam2Model"
    assert picked["depth"]["usable"] and picked["depth"]["folders"] == [str(models / "depth-tiny")]

    result = summarize(report, "python")
    assert any(line.startswith("Picked images: regions by SAM 2") for line in result.lines), result.lines


def test_doctor_without_models_says_what_a_picked_image_falls_back_to(hide_optional):
    r = run_backend("doctor", "--json", extra_paths=[hide_optional])
    report = json.loads(r.stdout)
    seg, depth = report["picked_images"]["segment"], report["picked_images"]["depth"]
    assert not seg["usable"] and not depth["usable"]
    assert any("colours and edges" in n for n in seg["notes"])
    assert any("flat plane" in n for n in depth["notes"])
    assert any("Depth-Anything-V2-Small-hf" in n for n in depth["notes"])
    line = [ln for ln in summarize(report, "python").lines if ln.startswith("Picked images")]
    assert line and "flat plane" in line[0]
