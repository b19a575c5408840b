"""`python -m backend doctor` reports packages, devices, models and what each mode needs."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.backend.jobs import run_backend


def test_doctor_text_lists_packages_and_modes(hide_optional):
    r = run_backend("doctor", extra_paths=[hide_optional])  # torch hidden: quicker, and tested below
    assert r.returncode == 0, r.stderr
    import numpy
    import PIL

    assert f"numpy                    {numpy.__version__}" in r.stdout
    assert PIL.__version__ in r.stdout
    for word in ("Python", "Packages:", "Devices:", "cpu:", "Models", "preview: ready", "guided:"):
        assert word in r.stdout


# What a diffusers folder holding only a `{}` model_index.json lacks (runtime.checkpoints.missing_parts).
EMPTY_FOLDER_MISSING = [
    f"{part}/ (folder missing)" for part in ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")
]


def test_doctor_json_and_model_folders(tmp_path):
    cache = tmp_path / "hub"
    snap = cache / "models--THUDM--CogVideoX-5b-I2V" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    (cache / "models--someone--unrelated-llm").mkdir()
    mine = tmp_path / "models" / "my-cogvideox"
    mine.mkdir(parents=True)
    (mine / "model_index.json").write_text("{}")
    trained = tmp_path / "models" / "aa-trained"
    trained.mkdir()
    (trained / "animateanything_index.json").write_text("{}")

    r = run_backend_env(
        "doctor", "--json", "--models", str(tmp_path / "models"), env={"HF_HUB_CACHE": str(cache)}
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    names = {m["name"]: m for m in report["models"]}
    # A `{}` model_index.json is not a checkpoint: incomplete, with every missing part named (the
    # check the guided mode runs before loading), in the cache and in a folder alike.
    for name in ("THUDM/CogVideoX-5b-I2V", "my-cogvideox"):
        assert names[name]["complete"] is False, names[name]
        assert names[name]["missing"] == EMPTY_FOLDER_MISSING, names[name]
    assert "someone/unrelated-llm" not in names
    assert names["my-cogvideox"]["source"] == "folder"
    assert names["aa-trained"]["complete"] is False and names["aa-trained"]["missing"]
    from backend.preview.splat import compiled_kernel

    splat_note = "the splatting is compiled (numba): ready" if compiled_kernel() else "no numba: "
    assert any(n.startswith(splat_note) for n in report["modes"]["preview"]["notes"]), report["modes"]
    guided = report["modes"]["guided"]
    assert guided["ready"] is False and any(
        "no CogVideoX image-to-video model found" in n for n in guided["notes"]
    )
    assert names["aa-trained"]["use"] == "animateanything"
    # An index file alone is not a checkpoint: the doctor lists what the folder lacks.
    aa = report["modes"]["animateanything"]
    assert aa["ready"] is False and any(n.startswith("missing: ") for n in aa["notes"]), aa
    # With torch present, the guided mode reports the memory plan it would use here.
    assert "plan_summary" in report["modes"]["guided"]["memory"]
    assert report["modes"]["preview"]["ready"] is True
    assert {p["module"] for p in report["packages"]} >= {"numpy", "PIL", "cv2", "av", "torch"}
    assert report["torch"]["installed"] is True and report["torch"]["devices"][-1]["device"] == "cpu"


def run_backend_env(*args, env):
    import subprocess
    import sys

    from tests.backend.jobs import ROOT, backend_env

    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        cwd=ROOT,
        env=backend_env() | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_text_lists_what_an_incomplete_folder_lacks(tmp_path, hide_optional):
    folder = tmp_path / "models" / "CogVideoX-5b-I2V"
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    r = run_backend("doctor", "--models", str(tmp_path / "models"), extra_paths=[hide_optional])
    assert r.returncode == 0, r.stderr
    assert f"CogVideoX-5b-I2V: incomplete download, for diffusers folder ({folder})" in r.stdout
    for line in EMPTY_FOLDER_MISSING:
        assert f"- missing: {line}" in r.stdout


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A real, complete tiny CogVideoX I2V checkpoint (diffusers layout, safetensors)."""
    from tests.guided.conftest import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("doctor") / "CogVideoX-tiny")


@pytest.mark.torch
def test_a_real_checkpoint_is_complete_and_one_missing_part_is_named(tiny_checkpoint, tmp_path):
    cache = tmp_path / "hub"
    snap = cache / "models--THUDM--CogVideoX-5b-I2V" / "snapshots" / "abc"
    shutil.copytree(tiny_checkpoint, snap)
    models = tmp_path / "models"
    shutil.copytree(tiny_checkpoint, models / "CogVideoX-tiny")
    shutil.copytree(tiny_checkpoint, models / "CogVideoX-broken")
    for weights in (models / "CogVideoX-broken" / "vae").glob("*.safetensors"):
        weights.unlink()

    r = run_backend_env("doctor", "--json", "--models", str(models), env={"HF_HUB_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    names = {m["name"]: m for m in report["models"]}
    for name in ("THUDM/CogVideoX-5b-I2V", "CogVideoX-tiny"):
        assert names[name]["complete"] is True and names[name]["missing"] == [], names[name]
    broken = names["CogVideoX-broken"]
    assert broken["complete"] is False
    assert broken["missing"] == ["vae/ weights: diffusion_pytorch_model.safetensors (or "
                                 "diffusion_pytorch_model.safetensors.index.json)"]  # fmt: skip
    assert report["modes"]["guided"]["ready"] is True


@pytest.mark.torch
def test_memory_report_on_this_machine():
    pytest.importorskip("torch")
    from backend.doctor import memory_report

    report = memory_report()
    assert report["mode"] == "guided" and report["torch"]
    assert report["plan_720x480x49"]["dtype"] in ("bf16", "fp16", "fp32")
    assert report["plan_summary"].startswith(report["device"])
    if not report["cuda_available"]:
        assert report["device"] == "cpu" and any("no CUDA GPU" in n for n in report["notes"])
