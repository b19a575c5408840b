"""Mode `guided` with model_family "wan" on tiny saved checkpoints: Time-to-Move (the default),
Wan-Move tracks, TI2V, a LoRA, limits refused before loading, cancel, and a real
`python -m backend run JOB` process."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from backend.errors import Cancelled, JobFailure

from .conftest import F, H, W

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))


class Recorder:
    def __init__(self, cancel_at=None, state=None):
        self.events, self.cancel_at, self.state = [], cancel_at, state

    def emit(self, event, **fields):
        self.events.append({"event": event, **fields})
        if self.cancel_at and (fields.get("stage"), fields.get("step")) == self.cancel_at:
            self.state.request("test")
        return True

    def steps(self, stage="denoise"):
        return [e["step"] for e in self.events if e.get("stage") == stage]


def wan_job(job_dir, model, size=H, **fields):
    from tests.backend.jobs import write_job

    spec = dict(
        mode="guided",
        model_family="wan",
        model=str(model),
        steps=10,
        prompt="a red cat",
        guidance_scale=5.0,
        device="cpu",
        camera="pan",
        step=0.05,
        fps=16.0,
    )
    spec.update(fields)
    return write_job(job_dir, width=size, height=size, num_frames=F, **spec)


def context(job_dir, events, cancel=None):
    from backend.context import load_context

    return load_context(job_dir, events=events, cancel=cancel, device="cpu")


def test_time_to_move_on_wan_in_process(wan21_ckpt, tmp_path):
    from backend.modes import guided

    rec = Recorder()
    ctx = context(wan_job(tmp_path / "job", wan21_ckpt, noise_warp=True), rec)
    result = guided.generate(ctx).check(F, H, W)
    info = result.info
    assert (info["model_family"], info["variant"], info["guidance"]) == ("wan", "2.1-i2v", "ttm")
    assert (info["tweak_index"], info["tstrong_index"]) == (1, 1)  # 3 / 7 of 50, scaled to 10 steps
    assert rec.steps() == list(range(1, 10))
    np.testing.assert_array_equal(result.frames[0], ctx.reference)
    assert info["memory_plan"]["device"] == "cpu" and info["prompt_embeddings"] == "encoded"
    json.dumps(info)


def test_wan_move_tracks_and_ti2v(wan21_ckpt, wan_ti2v_ckpt, tmp_path):
    from backend.modes import guided

    tracks = np.zeros((1, F, 2), np.float32)
    tracks[0, :, 0] = 8 + 2 * np.arange(F)
    tracks[0, :, 1] = 16
    rec = Recorder()
    ctx = context(wan_job(tmp_path / "move", wan21_ckpt, guidance="tracks", tracks=tracks, steps=3), rec)
    result = guided.generate(ctx).check(F, H, W)
    assert result.info["guidance"] == "tracks" and rec.steps() == [1, 2, 3]
    rec = Recorder()
    ti2v = guided.generate(
        context(wan_job(tmp_path / "ti2v", wan_ti2v_ckpt, size=64, steps=3, fps=24.0), rec)
    )
    assert ti2v.info["variant"] == "2.2-ti2v-5b" and ti2v.check(F, 64, 64).frames.shape == (F, 64, 64, 3)
    # Wan-Move needs Wan 2.1 weights
    with pytest.raises(JobFailure) as err:
        guided.generate(
            context(wan_job(tmp_path / "bad", wan_ti2v_ckpt, size=64, guidance="tracks"), Recorder())
        )
    assert err.value.kind == "invalid_job" and "Wan 2.1" in err.value.message


def tiny_lora(pipe, folder):
    from diffusers import WanImageToVideoPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(3)
    pipe.transformer.add_adapter(
        LoraConfig(
            r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    layers = get_peft_model_state_dict(pipe.transformer)
    WanImageToVideoPipeline.save_lora_weights(folder, transformer_lora_layers=layers, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_video_and_scale_zero_does_not(wan21_ckpt, tmp_path):
    pytest.importorskip("peft")
    from backend.modes import guided

    from .conftest import load

    lora = tiny_lora(load(wan21_ckpt), tmp_path / "lora")
    runs = {}
    for name, fields in (
        ("plain", {}),
        ("lora", {"lora": str(lora)}),
        ("zero", {"lora": str(lora), "lora_scale": 0.0}),
    ):
        job = wan_job(tmp_path / name, wan21_ckpt, steps=2, guidance="none", **fields)
        runs[name] = guided.generate(context(job, Recorder())).frames
    np.testing.assert_array_equal(runs["zero"], runs["plain"])
    assert np.abs(runs["lora"].astype(int) - runs["plain"]).max() > 0
    pth = tmp_path / "lora.pth"
    pth.write_bytes(b"x")
    with pytest.raises(JobFailure) as err:
        guided.generate(context(wan_job(tmp_path / "pth", wan21_ckpt, lora=str(pth)), Recorder()))
    assert err.value.kind == "invalid_job" and "pickled" in err.value.message


def test_size_refused_before_loading_with_what_it_can_do(wan21_ckpt, tmp_path):
    from backend.modes import guided

    rec = Recorder()
    with pytest.raises(JobFailure) as err:
        guided.generate(context(wan_job(tmp_path / "job", wan21_ckpt, size=40), rec))
    assert err.value.kind == "invalid_job" and "40x40" in err.value.message and "832x480" in err.value.message
    assert not any(e.get("stage") in ("flow", "render") for e in rec.events)


def test_cancel_during_denoise(wan21_ckpt, tmp_path):
    from backend.cancel import CancelState
    from backend.modes import guided

    state = CancelState()
    rec = Recorder(cancel_at=("denoise", 1), state=state)
    with pytest.raises(Cancelled):
        guided.generate(context(wan_job(tmp_path / "job", wan21_ckpt, steps=6, guidance="none"), rec, state))
    assert rec.steps() == [1]


def test_python_m_backend_run_wan(wan21_ckpt, tmp_path):
    from tests.backend.jobs import parse_events, run_backend

    job = wan_job(tmp_path / "job", wan21_ckpt, steps=4)
    os.environ["ANIMATE_ANYTHING_PNG"] = "1"
    try:
        proc = run_backend("run", job, timeout=180)
    finally:
        del os.environ["ANIMATE_ANYTHING_PNG"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = parse_events(proc.stdout)
    assert events[0]["event"] == "started" and events[-1]["event"] == "done"
    assert [e["step"] for e in events if e.get("stage") == "denoise"] == [1, 2, 3, 4]
    result = json.loads((job / "out" / "result.json").read_text())
    assert result["info"]["model_family"] == "wan" and result["info"]["guidance"] == "ttm"
    assert len(list((job / "out" / "frames").glob("*.png"))) == F
