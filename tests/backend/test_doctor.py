"""`python -m backend doctor` reports packages, devices, models and what each mode needs."""

from __future__ import annotations

import json

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
    assert names["THUDM/CogVideoX-5b-I2V"]["complete"] is True
    assert "someone/unrelated-llm" not in names
    assert names["my-cogvideox"]["source"] == "folder"
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
