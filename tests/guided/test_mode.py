"""Mode `guided` end to end on a tiny saved checkpoint: in process (progress, cancellation, errors)
and as a real `python -m backend run JOB` process."""

from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pytest

from backend.errors import Cancelled, JobFailure

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

H = W = 16
F = 9


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def guided_job(job_dir, model, **fields):
    from tests.backend.jobs import write_job

    spec = dict(
        mode="guided",
        model=str(model),
        steps=3,
        strength=0.67,
        guidance="sdedit",
        noise_warp=True,
        prompt="a red cat",
        guidance_scale=6.0,
        device="cpu",
        camera="pan",
        step=0.05,
    )
    spec.update(fields)
    return write_job(job_dir, width=spec.pop("width", W), height=spec.pop("height", H), num_frames=F, **spec)


class Recorder:
    """An Events stand-in that keeps events and can request a cancel at a given progress event."""

    def __init__(self, cancel_at=None, state=None):
        self.events, self.cancel_at, self.state = [], cancel_at, state

    def emit(self, event, **fields):
        self.events.append({"event": event, **fields})
        if self.cancel_at and (fields.get("stage"), fields.get("step")) == self.cancel_at:
            self.state.request("test")
        return True


def context(job_dir, events, cancel=None):
    from backend.context import load_context

    return load_context(job_dir, events=events, cancel=cancel, device="cpu")


def test_generate_in_process(tiny_ckpt, tmp_path, cache_env):
    from backend.modes import guided

    rec = Recorder()
    ctx = context(guided_job(tmp_path / "job", tiny_ckpt), rec)
    result = guided.generate(ctx).check(F, H, W)
    assert result.frames.dtype == np.uint8 and result.frames.shape == (F, H, W, 3)
    np.testing.assert_array_equal(result.frames[0], ctx.reference)
    assert result.flow is not None and np.abs(result.flow[-1]).max() > 0  # the preview's (pan) flow
    denoise = [(e["step"], e["total"]) for e in rec.events if e.get("stage") == "denoise"]
    assert denoise == [(1, 2), (2, 2)]  # int(3 steps x 0.67) = 2 steps, one event each
    assert result.info["prompt_embeddings"] == "encoded" and result.info["memory_plan"]["device"] == "cpu"
    plan = result.info["memory_plan"]
    assert plan["fits"] and plan["peak_gib"] < 0.5  # sized from this tiny checkpoint, not the 5B defaults
    json.dumps(result.info)
    # A second run with the same prompt skips T5, and the same seed gives the same video.
    again = guided.generate(context(guided_job(tmp_path / "job2", tiny_ckpt), Recorder()))
    assert again.info["prompt_embeddings"] == "cached"
    np.testing.assert_array_equal(again.frames, result.frames)


def test_cancel_between_steps_stops_before_decode_and_frees(tiny_ckpt, tmp_path, cache_env, monkeypatch):
    from backend.cancel import CancelState
    from backend.guided import load
    from backend.guided.pipeline import GuidedCogVideoXPipeline
    from backend.modes import guided

    decodes, pipes = [], []
    monkeypatch.setattr(GuidedCogVideoXPipeline, "decode_latents", lambda self, x: decodes.append(1))
    real_load = load.load_pipeline

    def load_and_watch(*a, **kw):
        pipe = real_load(*a, **kw)
        pipes.append(weakref.ref(pipe))
        return pipe

    monkeypatch.setattr(load, "load_pipeline", load_and_watch)
    state = CancelState()
    rec = Recorder(cancel_at=("denoise", 1), state=state)
    ctx = context(guided_job(tmp_path / "job", tiny_ckpt, steps=6, strength=1.0), rec, cancel=state)
    with pytest.raises(Cancelled):
        guided.generate(ctx)
    steps = [e["step"] for e in rec.events if e.get("stage") == "denoise"]
    assert steps == [1]  # the request after step 1 stopped the loop at the next step's report
    assert decodes == []
    gc.collect()
    assert len(pipes) == 1 and pipes[0]() is None  # nothing holds the model after a cancel


def test_size_the_checkpoint_cannot_do_is_an_invalid_job(tiny_ckpt, tmp_path, cache_env):
    from backend.modes import guided

    ctx = context(guided_job(tmp_path / "job", tiny_ckpt, width=24), Recorder())
    with pytest.raises(JobFailure) as err:
        guided.generate(ctx)
    assert err.value.kind == "invalid_job"
    assert "24x16" in err.value.message and "exactly 16x16 pixels and 9 frames" in err.value.message


def test_incomplete_model_is_reported_before_any_work(tiny_ckpt, tmp_path, cache_env):
    import shutil

    from backend.modes import guided

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    shutil.rmtree(broken / "vae")
    rec = Recorder()
    with pytest.raises(JobFailure) as err:
        guided.generate(context(guided_job(tmp_path / "job", broken), rec))
    assert err.value.kind == "missing_model" and "vae/ (folder missing)" in err.value.message
    assert str(broken) in err.value.message
    assert not any(e.get("stage") in ("flow", "denoise") for e in rec.events)  # no preview, no model


def test_python_m_backend_run_real_process(tiny_ckpt, tmp_path):
    from tests.backend.jobs import parse_events, run_backend

    job = guided_job(tmp_path / "job", tiny_ckpt, noise_warp=False, strength=0.67)
    env_cache = tmp_path / "cache"
    import os

    os.environ["ANIMATE_ANYTHING_CACHE"] = str(env_cache)  # inherited by the child through backend_env
    os.environ["ANIMATE_ANYTHING_PNG"] = "1"  # PNG frames beside video.mp4 (backend/outputs.py)
    try:
        proc = run_backend("run", job, timeout=180)
    finally:
        del os.environ["ANIMATE_ANYTHING_CACHE"]
        del os.environ["ANIMATE_ANYTHING_PNG"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = parse_events(proc.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert [e["step"] for e in events if e.get("stage") == "denoise"] == [1, 2]
    result = json.loads((job / "out" / "result.json").read_text())
    assert result["mode"] == "guided" and result["info"]["denoising_steps"] == 2
    from PIL import Image

    first = np.asarray(Image.open(job / "out" / "frames" / "0000.png").convert("RGB"))
    reference = np.asarray(Image.open(job / "reference.png").convert("RGB"))
    np.testing.assert_array_equal(first, reference)
    assert len(list((job / "out" / "frames").glob("*.png"))) == F
    assert list(env_cache.glob("prompt_embeds/*.safetensors"))


def test_python_m_backend_run_missing_model_error_event(tmp_path):
    from tests.backend.jobs import parse_events, run_backend

    job = guided_job(tmp_path / "job", tmp_path / "no-model-here")
    proc = run_backend("run", job, timeout=120)
    assert proc.returncode == 1
    error = parse_events(proc.stdout)[-1]
    assert error["event"] == "error" and error["kind"] == "missing_model"
    assert str(tmp_path / "no-model-here") in error["message"]
    assert not (job / "out").exists()


def test_missing_diffusers_is_a_missing_dependency(tiny_ckpt, tmp_path, cache_env, monkeypatch):
    import sys

    from backend.modes import guided

    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ModuleNotFoundError
    with pytest.raises(JobFailure) as err:
        guided.generate(context(guided_job(tmp_path / "job", tiny_ckpt), Recorder()))
    assert err.value.kind == "missing_dependency" and "'diffusers'" in err.value.message
    assert "requirements-generator.txt" in err.value.hint


def test_missing_text_encoder_without_cached_prompt_fails_before_the_preview(tiny_ckpt, tmp_path, cache_env):
    import shutil

    from backend.modes import guided

    no_t5 = tmp_path / "no-t5"
    shutil.copytree(tiny_ckpt, no_t5)
    shutil.rmtree(no_t5 / "text_encoder")
    rec = Recorder()
    with pytest.raises(JobFailure) as err:
        guided.generate(context(guided_job(tmp_path / "job", no_t5, prompt="a blue dog"), rec))
    assert err.value.kind == "missing_model" and "text_encoder/ (folder missing)" in err.value.message
    assert not any(e.get("stage") == "flow" for e in rec.events)


def test_time_to_move_is_the_default_and_counts_its_steps(tiny_ckpt, tmp_path, cache_env):
    from backend.modes import guided
    from tests.backend.jobs import write_job

    job = write_job(
        tmp_path / "job",
        width=W,
        height=H,
        num_frames=F,
        mode="guided",
        model=str(tiny_ckpt),
        steps=10,
        prompt="a red cat",
        device="cpu",
        camera="pan",
        step=0.05,
    )
    rec = Recorder()
    result = guided.generate(context(job, rec)).check(F, H, W)
    info = result.info
    assert (info["guidance"], info["tweak_index"], info["tstrong_index"]) == ("ttm", 1, 2)  # 4 / 9 of 50
    assert [e["step"] for e in rec.events if e.get("stage") == "denoise"] == list(range(1, 10))
    np.testing.assert_array_equal(result.frames[0], context(job, Recorder()).reference)
    bad = write_job(
        tmp_path / "bad",
        width=W,
        height=H,
        num_frames=F,
        mode="guided",
        model=str(tiny_ckpt),
        steps=4,
        tweak_index=3,
        tstrong_index=2,
        device="cpu",
    )
    with pytest.raises(JobFailure) as err:
        guided.generate(context(bad, Recorder()))
    assert err.value.kind == "invalid_job" and "tweak_index" in err.value.message
