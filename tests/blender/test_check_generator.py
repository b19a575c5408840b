"""animate_anything.check_generator: `python -m backend doctor --json` with the preferences'
interpreter, summarised in words; real bpy, real processes."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender


def check():
    """What this Blender keeps of its checks (the adapter)."""
    return submodule("operators.adapter.checks")


def doctor_check():
    """The Blender-free check and its summary, as the loaded extension imports them."""
    return submodule("blender_animate.addon.doctor_check")


@pytest.fixture
def prefs(ext, bpy_module):
    """The add-on preferences; python_path and the model folders are put back after the test."""
    p = submodule("operators.adapter.preferences").get_preferences(bpy_module.context)
    if p is None:
        pytest.skip("the add-on preferences are not registered")
    saved = (p.python_path, p.cogvideox_model, p.animateanything_model)
    yield p
    p.python_path, p.cogvideox_model, p.animateanything_model = saved
    running = check()._running
    if running is not None:
        running.cancel()


def _script(path, body: str):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_the_real_interpreter_is_checked_and_summarised(prefs, bpy_module, tmp_path):
    bpy = bpy_module
    models = tmp_path / "models"
    (models / "CogVideoX-5b-I2V").mkdir(parents=True)
    (models / "CogVideoX-5b-I2V" / "model_index.json").write_text("{}")
    prefs.python_path = ""  # empty: Blender's own Python (here the interpreter running the tests)
    prefs.cogvideox_model = str(models)
    prefs.animateanything_model = str(tmp_path / "no-such-weights")
    assert bpy.ops.animate_anything.check_generator() == {"FINISHED"}
    result = check().last_result()
    assert result.ok and result.python == sys.executable and "preview" in result.ready
    assert result.headline.startswith("Generator ready for: Preview")
    text = "\n".join(result.lines)
    assert f"Python {sys.version.split()[0]} at" in text
    # torch and its devices, in words whatever this machine has
    assert any(
        key in text
        for key in ("torch is not installed", "No CUDA device", "GPU cuda:0", "torch is installed but")
    )
    # A model_index.json alone is not a model: the doctor's real completeness check says so.
    where = models / "CogVideoX-5b-I2V"
    line = next(
        ln for ln in result.lines if ln.startswith("Model CogVideoX-5b-I2V: incomplete folder (missing ")
    )
    assert line.endswith(f", for diffusers folder ({where})") and "transformer" in line
    assert f"AnimateAnything Weights: the folder {tmp_path / 'no-such-weights'} does not exist" in text
    assert "AnimateAnything: not ready: needs trained AnimateAnything weights" in text
    assert all(len(line) <= doctor_check().DISPLAY_WIDTH for line in result.display)
    assert not check().is_checking()


def test_a_missing_interpreter_is_reported(prefs, bpy_module, tmp_path):
    bpy = bpy_module
    prefs.python_path = str(tmp_path / "nowhere" / "python3")
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.animate_anything.check_generator()
    result = check().last_result()
    assert not result.ok and result.python == str(tmp_path / "nowhere" / "python3")
    assert (
        "does not exist" in result.headline and "Preferences > Add-ons > Animate Anything" in result.lines[0]
    )
    assert not check().is_checking()


def test_an_interpreter_that_cannot_run_the_doctor_says_why(prefs, bpy_module, tmp_path):
    bpy = bpy_module
    prefs.python_path = _script(
        tmp_path / "python3", 'echo "SyntaxError: invalid syntax (too old?)" >&2; exit 1'
    )
    with pytest.raises(RuntimeError, match="could not run the check"):
        bpy.ops.animate_anything.check_generator()
    result = check().last_result()
    assert not result.ok and "SyntaxError: invalid syntax (too old?)" in result.lines[0]
    assert "3.10+" in result.lines[1]


def test_a_doctor_that_hangs_is_stopped_at_the_timeout(ext, tmp_path):
    pid_file = tmp_path / "pid"
    python = _script(tmp_path / "python3", f'echo $$ > "{pid_file}"; exec sleep 30')
    doctor = doctor_check().DoctorCheck(python, timeout=0.5).start()
    t0 = time.monotonic()
    assert doctor.poll() is None
    result = doctor.wait()
    assert time.monotonic() - t0 < 5.0
    assert not result.ok and "did not answer within 0.5 s" in result.headline
    assert "did not answer" in result.headline and "doctor --json" in result.lines[0]
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_with_a_window_the_check_is_modal_and_never_waits(prefs, bpy_module, tmp_path, monkeypatch):
    """The UI branch (the bpy module is in background mode, so the test lifts that one check): the
    operator returns while the doctor is still held back (it waits for a file the test writes only
    afterwards, so an operator that waited for it could never return RUNNING_MODAL with a ready
    result), the button greys out while the doctor runs, and polling ends it."""
    bpy = bpy_module
    module = check()
    monkeypatch.setattr(module, "run_synchronously", lambda context: False)
    go = tmp_path / "go"
    prefs.python_path = _script(
        tmp_path / "python3", f'while [ ! -e "{go}" ]; do sleep 0.05; done; exec {sys.executable} "$@"'
    )
    assert bpy.ops.animate_anything.check_generator("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
    assert module.is_checking() and not bpy.ops.animate_anything.check_generator.poll()
    running = module._running
    assert module.poll_check(running) is None  # the doctor cannot have answered yet
    go.write_text("")
    deadline = time.monotonic() + 60
    while module.poll_check(running) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not module.is_checking() and bpy.ops.animate_anything.check_generator.poll()
    result = module.last_result()
    assert result.ok and result.python == prefs.python_path and "preview" in result.ready


def test_the_summary_says_what_to_do(ext, tmp_path):
    report = {
        "python": {"version": "3.10.12", "executable": "/env/bin/python"},
        "packages": [
            {"module": "numpy", "package": "numpy", "installed": True, "needed_by": "all modes"},
            {
                "module": "PIL",
                "package": "Pillow",
                "installed": False,
                "needed_by": "all modes",
                "purpose": "images",
            },
            {"module": "av", "package": "av", "installed": False, "needed_by": "optional", "purpose": "mp4"},
            {
                "module": "torch",
                "package": "torch",
                "installed": True,
                "needed_by": "guided, animateanything",
            },
            {
                "module": "diffusers",
                "package": "diffusers",
                "installed": False,
                "needed_by": "guided, animateanything",
            },
            {
                "module": "accelerate",
                "package": "accelerate",
                "installed": False,
                "needed_by": "guided, animateanything (optional)",
                "purpose": "memory offloading",
            },
        ],
        "torch": {
            "installed": True,
            "version": "2.5.1",
            "devices": [
                {"device": "cuda:0", "name": "NVIDIA H100", "total_gib": 79.6, "free_gib": 70.0},
                {"device": "cpu", "name": "x86_64"},
            ],
        },
        "models": [],
        "hf_cache": "/cache/hub",
        "modes": {
            "preview": {"ready": False, "notes": []},
            "guided": {
                "ready": False,
                "notes": ["needs torch ... requirements.txt", "no CogVideoX model found"],
            },
        },
    }
    result = doctor_check().summarize(
        json.loads(json.dumps(report)), "/env/bin/python", {"CogVideoX Model": "THUDM/CogVideoX-5b-I2V"}
    )
    text = "\n".join(result.lines)
    assert not result.ok and result.headline == "The generator cannot run with /env/bin/python"
    assert "Missing, needed by every mode: pillow. Install them into this Python (pip install pillow)" in text
    assert "Missing for the guided modes: diffusers" in text
    assert "Optional, not installed: av (mp4); accelerate (memory offloading)" in text
    assert "GPU cuda:0: NVIDIA H100: 70.0 of 79.6 GiB free" in text
    assert "No video model found (looked in /cache/hub)" in text
    assert "CogVideoX Model: THUDM/CogVideoX-5b-I2V is not in the Hugging Face cache" in text
    assert (
        "Guided: not ready: no CogVideoX model found" in text
        and "requirements.txt" not in text.split("Guided")[1]
    )
    # no GPU: said once, with the reason
    report["torch"] = {
        "installed": True,
        "version": "2.13.0+cpu",
        "cuda_build": None,
        "devices": [{"device": "cpu"}],
    }
    report["packages"][1]["installed"] = True
    report["modes"]["preview"]["ready"] = True
    result = doctor_check().summarize(report, "/env/bin/python", {"AnimateAnything Weights": str(tmp_path)})
    assert result.ok and result.headline == "Generator ready for: Preview"
    assert f"AnimateAnything Weights: no model found in {tmp_path} or its subfolders" in result.lines
    assert "No CUDA device: torch 2.13.0+cpu is a CPU-only build" in "\n".join(result.lines)


def test_the_preferences_draw_the_stored_result(prefs, bpy_module, tmp_path):
    """draw() reads the stored result only; a recording layout stands in for Blender's."""
    calls = []

    class Layout:
        def __getattr__(self, name):
            def record(*args, **kwargs):
                calls.append((name, kwargs.get("text")))
                return self

            return record

        def __setattr__(self, name, value):
            calls.append((name, value))

    module = check()
    module._last = doctor_check().failure(
        "/x/python", "the generator's Python /x/python does not exist", "Set it"
    )
    submodule("panels.preferences").draw_check_result(Layout())
    assert ("label", "the generator's Python /x/python does not exist") in calls
    assert ("label", "Set it") in calls and ("alert", True) in calls
