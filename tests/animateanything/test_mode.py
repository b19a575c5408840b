"""Mode `animateanything` end to end: `python -m backend run JOB` as a real process with tiny saved models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from tests.backend.jobs import parse_events, run_backend, write_job  # noqa: E402

from .conftest import build_tiny_pipeline, save_base  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

F, H, W = 9, 32, 32  # the tiny transformer's only size (learned position embeddings: 4x4 latents, 9 frames)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(AnimateAnything folder, base CogVideoX folder): tiny, safetensors, the base referenced."""
    root = tmp_path_factory.mktemp("aa-ckpt")
    pipe = build_tiny_pipeline(seed=3)
    save_base(pipe, root / "base")
    pipe.set_base_model(str(root / "base"))
    pipe.save_pretrained(root / "aa")
    return root / "aa", root / "base"


def _job(tmp_path, aa_model: str, **extra):
    tracks = np.zeros((1, F, 2), np.float32)
    tracks[0, :, 0] = np.linspace(10, 20, F)
    tracks[0, :, 1] = 16
    return write_job(
        tmp_path / "job", width=W, height=H, num_frames=F, camera="pan", step=0.05, tracks=tracks,
        mode="animateanything", animateanything_model=aa_model, steps=2, prompt="a red cat", device="cpu",
        **extra,
    )  # fmt: skip


def _run(job, tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))  # prompt embeddings cache
    monkeypatch.setenv("ANIMATE_ANYTHING_PNG", "1")  # PNG frames beside video.mp4 (backend/outputs.py)
    proc = run_backend("run", job, timeout=300)
    return proc, parse_events(proc.stdout)


def test_job_runs_both_stages_end_to_end(tmp_path, monkeypatch, checkpoint):
    aa, _ = checkpoint
    job = _job(tmp_path, str(aa))
    proc, events = _run(job, tmp_path, monkeypatch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert events[0]["event"] == "started" and events[0]["mode"] == "animateanything"
    steps = [(e["stage"], e["step"], e["total"]) for e in events if e["event"] == "progress"]
    assert ("flow", 2, 2) in steps and ("video", 2, 2) in steps
    assert steps.index(("flow", 2, 2)) < steps.index(("video", 1, 2))  # stage 1, then stage 2
    assert events[-1]["event"] == "done"
    result = json.loads((job / "out" / "result.json").read_text())
    assert result["info"]["stage1"] == "FGM + CRM"
    plan = result["info"]["memory_plan"]  # placed by the runtime's memory plan, as the guided mode
    assert plan["device"] == "cpu" and plan["offload"] == "none" and plan["dtype"] == "fp32"
    frames = sorted((job / "out" / "frames").glob("*.png"))
    assert len(frames) == F
    flow = np.load(job / "out" / "flow.npz")
    arr = flow[flow.files[0]]
    assert arr.shape == (F, H, W, 2) and np.all(arr[0] == 0)


def test_checkpoint_without_stage1_falls_back_to_the_analytic_flow(tmp_path, monkeypatch, checkpoint):
    aa, _ = checkpoint
    partial = tmp_path / "aa-stage2-only"
    shutil.copytree(aa, partial)
    index = json.loads((partial / "animateanything_index.json").read_text())
    for name in ("flow_vae", "flow_generator", "camera_reference", "image_vae", "flow_scheduler"):
        index["components"].pop(name)
        shutil.rmtree(partial / name)
    (partial / "animateanything_index.json").write_text(json.dumps(index))
    job = _job(tmp_path, str(partial), offload="group")
    proc, events = _run(job, tmp_path, monkeypatch)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("analytic unified flow" in w for w in warnings)
    info = json.loads((job / "out" / "result.json").read_text())["info"]
    assert info["stage1"] == "analytic unified flow"
    # The job's offload goes through the plan: on the CPU it says why it is not used (not silently).
    assert info["memory_plan"]["offload"] == "none"
    assert "offload group ignored on the CPU" in info["memory_plan"]["reasons"]


def test_missing_and_incomplete_checkpoints_are_missing_model_errors(tmp_path, monkeypatch, checkpoint):
    """In process (the subprocess path is the test above): the failures a user can act on."""
    from backend.context import load_context
    from backend.errors import JobFailure
    from backend.modes import animateanything

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the mode sets them; restore after the test
        monkeypatch.setenv(name, "1")
    aa, _ = checkpoint
    with pytest.raises(JobFailure) as info:
        animateanything.generate(load_context(_job(tmp_path / "a", ""), device="cpu"))
    assert info.value.kind == "missing_model" and "published no weights" in info.value.hint

    broken = tmp_path / "aa-broken"
    shutil.copytree(aa, broken)
    (broken / "flow_fusion" / "diffusion_pytorch_model.safetensors").unlink()
    job = _job(tmp_path / "b", str(broken), model=str(tmp_path / "nowhere"))
    with pytest.raises(JobFailure) as info:
        animateanything.generate(load_context(job, device="cpu"))
    assert info.value.kind == "missing_model"
    assert "flow_fusion/: diffusion_pytorch_model.safetensors" in info.value.message
    assert "nowhere" in info.value.message  # the base override that does not exist is listed too


def test_cancel_during_stage2_stops_the_mode(tmp_path, monkeypatch, checkpoint):
    """In process: a cancel requested at the first video step raises Cancelled out of generate()."""
    from backend.cancel import CancelState
    from backend.context import load_context
    from backend.errors import Cancelled
    from backend.modes import animateanything

    aa, _ = checkpoint
    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the mode sets them; restore after the test
        monkeypatch.setenv(name, "1")
    state = CancelState()
    seen = []

    class Events:
        def emit(self, event, **fields):
            seen.append((event, fields.get("stage"), fields.get("step")))
            if event == "progress" and fields.get("stage") == "video":
                state.request("test")

    ctx = load_context(_job(tmp_path, str(aa)), events=Events(), cancel=state, device="cpu")
    with pytest.raises(Cancelled):
        animateanything.generate(ctx)
    assert ("progress", "flow", 2) in seen
    assert [s for s in seen if s[1] == "video"] == [("progress", "video", 1)]  # stopped at the next check


def test_wrong_size_for_a_fixed_size_checkpoint_is_an_invalid_job():
    from types import SimpleNamespace

    from backend.errors import JobFailure
    from backend.modes.animateanything import _check_size

    tcfg = SimpleNamespace(use_learned_positional_embeddings=True, sample_height=60, sample_width=90)
    vcfg = SimpleNamespace(block_out_channels=(128, 256, 256, 512))  # 8x spatial
    _check_size(tcfg, vcfg, 49, 480, 720)  # CogVideoX-5B-I2V's own size passes
    with pytest.raises(JobFailure) as info:
        _check_size(tcfg, vcfg, 49, 512, 768)
    assert info.value.kind == "invalid_job" and "720x480" in info.value.hint


def test_doctor_finds_a_complete_checkpoint(checkpoint):
    """`python -m backend doctor --models DIR` calls a saved checkpoint ready."""
    aa, _ = checkpoint
    report = json.loads(run_backend("doctor", "--json", "--models", str(aa)).stdout)
    assert report["modes"]["animateanything"]["ready"] is True, report["modes"]["animateanything"]
