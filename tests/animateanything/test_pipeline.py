"""AnimateAnythingPipeline at tiny sizes: the identity start against the stock I2V pipeline, stage
replacement, progress and cancellation, checkpoints (base referenced, not copied) and clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from backend.animateanything.pipeline import (  # noqa: E402
    INDEX_FILE,
    AnimateAnythingPipeline,
    IncompleteCheckpointError,
)

from .conftest import build_tiny_pipeline, save_base  # noqa: E402

pytestmark = pytest.mark.torch

F, H, W = 9, 32, 32  # 4k+1 frames; 32 px = the tiny transformer's 4x4 latent sample size (learned pos emb)
STEPS = 2
TEXT_LEN = 16  # the tiny transformer's max_text_seq_length


def _image():
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 8, y * 8, (x // 4 + y // 4) % 2 * 255], -1).astype(np.uint8)


def _flow():
    flow = np.zeros((F, H, W, 2), np.float32)
    flow[..., 0] = np.linspace(0, 6, F)[:, None, None]  # a pan: everything moves right over time
    return flow


def _tracks():
    tracks = np.zeros((1, F, 2), np.float32)
    tracks[0, :, 0] = np.linspace(8, 20, F)
    tracks[0, :, 1] = 16
    return tracks


def _recorder(events, raise_at=None):
    """A diffusers step-end callback recording (stage, step, total); raises ``raise_at`` in stage 2."""

    def on_step_end(p, i, t, kwargs):
        events.append((p.stage, i + 1, p.num_timesteps))
        if raise_at is not None and p.stage == "video":
            raise raise_at
        return kwargs

    return on_step_end


def _run(pipe, **kw):
    args = dict(
        prompt="a cat runs", height=H, width=W, num_frames=F, num_inference_steps=STEPS, flow_steps=STEPS,
        generator=torch.Generator().manual_seed(0), max_sequence_length=TEXT_LEN,
    )  # fmt: skip
    args.update(kw)
    return pipe(_image(), **args)


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


def test_identity_start_equals_stock_cogvideox_i2v_pipeline(pipe):
    from diffusers import CogVideoXImageToVideoPipeline
    from PIL import Image

    stock = CogVideoXImageToVideoPipeline(
        tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, transformer=pipe.transformer,
        scheduler=pipe.scheduler,
    )  # fmt: skip
    stock.set_progress_bar_config(disable=True)
    want = stock(
        Image.fromarray(_image()), prompt="a cat runs", height=H, width=W, num_frames=F,
        num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np",
        max_sequence_length=TEXT_LEN,
    ).frames[0]  # fmt: skip
    want = np.clip(np.round(want * 255.0), 0, 255).astype(np.uint8)
    got = _run(pipe, flow=_flow())
    assert got.frames.shape == (F, H, W, 3) and got.frames.dtype == np.uint8
    assert np.array_equal(got.frames, want)  # zero fusion + W = 1: exactly the stock output


def test_trained_stage2_parts_change_the_video():
    pipe = build_tiny_pipeline(stage1=False)
    base = _run(pipe, flow=_flow()).frames
    with torch.no_grad():
        torch.nn.init.normal_(pipe.flow_fusion.attn.to_out[0].weight, std=0.5)
        pipe.frequency_stabilizer.weight[:, :, 1] = 0.0
    moved = _run(pipe, flow=_flow()).frames
    assert np.abs(moved.astype(int) - base.astype(int)).max() > 0


def test_both_stages_progress_and_flow_convention(pipe):
    events = []
    out = _run(pipe, tracks=_tracks(), callback_on_step_end=_recorder(events))
    assert out.frames.shape == (F, H, W, 3)
    assert out.flow.shape == (F, H, W, 2) and out.flow.dtype == np.float32
    assert np.all(out.flow[0] == 0)  # flow from frame 0 to itself
    assert events == [("flow", 1, 2), ("flow", 2, 2), ("video", 1, 2), ("video", 2, 2)]


def test_stage1_only_and_camera_input(pipe):
    c2w = np.tile(np.eye(4), (F, 1, 1))
    c2w[:, 0, 3] = np.linspace(0, 0.2, F)
    K = np.array([[30.0, 0, 16], [0, 30.0, 16], [0, 0, 1]])
    out = _run(pipe, c2w=c2w, K=K, output_type="flow", flow_steps=1)
    assert out.frames is None and out.flow.shape == (F, H, W, 2)
    static = _run(pipe, output_type="flow", flow_steps=1)
    assert np.array_equal(out.flow, static.flow)  # camera motion attention starts at zero
    weights = [m.attn.to_out[0].weight for m in pipe.camera_reference.camera_attentions]
    saved = [w.detach().clone() for w in weights]
    try:
        with torch.no_grad():
            for w in weights:
                torch.nn.init.normal_(w, std=0.5)
        moved = _run(pipe, c2w=c2w, K=K, output_type="flow", flow_steps=1)
        static = _run(pipe, output_type="flow", flow_steps=1)
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved):
                w.copy_(s)
    assert not np.allclose(moved.flow, static.flow)  # the camera reaches the flow through the CRM


def test_cancel_from_callback_stops_and_restores_the_transformer(pipe):
    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        _run(pipe, flow=_flow(), callback_on_step_end=_recorder([], raise_at=Stop()))
    names = {type(p).__name__ for p in pipe.transformer.attn_processors.values()}
    assert names == {"CogVideoXAttnProcessor2_0"}
    assert (
        not pipe.transformer._forward_pre_hooks
        and not pipe.transformer.transformer_blocks[0]._forward_pre_hooks
    )


def _count_decodes(monkeypatch, pipe) -> dict:
    calls = {"video": 0, "flow": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(pipe, "decode_latents", counted("video", pipe.decode_latents))
    monkeypatch.setattr(pipe.flow_vae, "decode_flow", counted("flow", pipe.flow_vae.decode_flow))
    return calls


@pytest.mark.parametrize("stage", ["flow", "video"])
def test_interrupt_skips_the_remaining_steps_and_decodes_nothing(pipe, monkeypatch, stage):
    calls = _count_decodes(monkeypatch, pipe)
    events = []

    def interrupt(p, i, t, kwargs):
        events.append((p.stage, i + 1))
        if p.stage == stage:
            p._interrupt = True
        return kwargs

    out = _run(pipe, tracks=_tracks(), callback_on_step_end=interrupt)
    assert out.frames is None
    assert events == ([("flow", 1)] if stage == "flow" else [("flow", 1), ("flow", 2), ("video", 1)])
    assert calls["video"] == 0 and (calls["flow"] == 0) == (stage == "flow")
    assert (out.flow is None) == (stage == "flow")
    # The next call starts afresh (the flag is reset), and the hooks are gone.
    assert _run(pipe, flow=_flow()).frames.shape == (F, H, W, 3)
    names = {type(p).__name__ for p in pipe.transformer.attn_processors.values()}
    assert names == {"CogVideoXAttnProcessor2_0"} and pipe.stage is None


def test_callback_can_replace_latents_and_return_dict_false_gives_a_tuple(pipe):
    def zero_latents(p, i, t, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])} if p.stage == "video" else kwargs

    frames, flow = _run(pipe, flow=_flow(), callback_on_step_end=zero_latents, return_dict=False)
    plain = _run(pipe, flow=_flow())
    assert frames.shape == (F, H, W, 3) and np.array_equal(flow, _flow())
    assert not np.array_equal(frames, plain.frames)  # the returned latents were used
    with pytest.raises(ValueError, match="callback_on_step_end_tensor_inputs"):
        _run(pipe, flow=_flow(), callback_on_step_end_tensor_inputs=["noise_pred"])


def test_model_offload_frees_its_hooks_after_every_call(pipe):
    pipe.enable_model_cpu_offload(device="cpu")
    try:
        got = _run(pipe, flow=_flow()).frames
        hooked = [n for n, m in pipe.components.items() if getattr(m, "_hf_hook", None) is not None]
        assert "transformer" in hooked  # offload hooks stay installed, the models are offloaded again
    finally:
        pipe.remove_all_hooks()
        pipe.to("cpu")
    assert got.shape == (F, H, W, 3)


def test_group_offload_streams_the_transformer_and_keeps_the_animateanything_parts_whole():
    """Group offload (the memory plan's "group") is honoured, not turned into model offload: the
    transformer's blocks are grouped; the parts used through other methods than forward stay whole."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING

    from backend.runtime.memory import MemoryPlan
    from backend.runtime.placement import apply_plan

    pipe = build_tiny_pipeline()
    want = _run(pipe, tracks=_tracks())
    plan = MemoryPlan(device="cpu", dtype="fp32", offload="group", vae_tiling=False, vae_slicing=False,
                      peak_bytes=0)  # fmt: skip
    apply_plan(pipe, plan)

    def grouped(module) -> bool:
        return any(
            getattr(m, "_diffusers_hook", None) is not None
            and m._diffusers_hook.get_hook(_GROUP_OFFLOADING) is not None
            for m in module.modules()
        )

    assert grouped(pipe.transformer) and grouped(pipe.text_encoder)
    kept = ["vae", "flow_encoder", "flow_fusion", "frequency_stabilizer", "flow_vae", "flow_generator",
            "camera_reference", "image_vae"]  # fmt: skip
    assert [n for n in kept if grouped(getattr(pipe, n))] == []
    got = _run(pipe, tracks=_tracks())
    np.testing.assert_allclose(got.flow, want.flow, atol=1e-5)
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1


def test_no_stage1_and_no_flow_is_a_clear_error():
    pipe = build_tiny_pipeline(stage1=False, text=False)
    with pytest.raises(ValueError, match="no learned stage 1.*flow_vae.*pass flow="):
        _run(pipe, prompt_embeds=torch.zeros(1, TEXT_LEN, 32))
    with pytest.raises(ValueError, match="4k \\+ 1"):
        _run(pipe, num_frames=8, flow=_flow())


def test_too_many_frames_for_the_flow_generator_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="at most 16 frames"):  # tiny motion_max_seq_length
        _run(pipe, num_frames=17)


def test_save_references_the_base_and_round_trips(tmp_path, pipe):
    base = tmp_path / "cogvideox"
    save_base(pipe, base)
    pipe.set_base_model(str(base))
    try:
        pipe.save_pretrained(tmp_path / "aa")
    finally:
        pipe.set_base_model("")
        pipe.base_model = None
    saved = sorted(p.name for p in (tmp_path / "aa").iterdir())
    assert "transformer" not in saved and "vae" not in saved  # referenced, not copied
    assert {"flow_encoder", "flow_fusion", "frequency_stabilizer", "flow_generator", INDEX_FILE} <= set(saved)
    assert not list((tmp_path / "aa").rglob("*.bin"))  # safetensors only
    index = json.loads((tmp_path / "aa" / INDEX_FILE).read_text())
    assert index["base_model"] == str(base) and index["components"]["transformer"]["source"] == "base"

    loaded = AnimateAnythingPipeline.from_pretrained(tmp_path / "aa")
    assert loaded.base_model == str(base)
    want, got = _run(pipe, tracks=_tracks()), _run(loaded, tracks=_tracks())
    np.testing.assert_allclose(got.flow, want.flow, atol=1e-4)
    assert np.abs(got.frames.astype(int) - want.frames.astype(int)).max() <= 1


def test_save_copies_the_base_when_its_origin_is_unknown(tmp_path):
    pipe = build_tiny_pipeline(stage1=False, text=False)
    pipe.save_pretrained(tmp_path / "aa")
    assert (tmp_path / "aa" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = AnimateAnythingPipeline.from_pretrained(tmp_path / "aa")
    assert loaded.flow_generator is None and loaded.text_encoder is None
    emb = torch.zeros(1, TEXT_LEN, 32)
    want = _run(pipe, flow=_flow(), prompt_embeds=emb, negative_prompt_embeds=emb).frames
    got = _run(loaded, flow=_flow(), prompt_embeds=emb, negative_prompt_embeds=emb).frames
    assert np.array_equal(got, want)


def test_incomplete_folder_lists_everything_missing(tmp_path, pipe):
    base = tmp_path / "cogvideox"
    pipe.set_base_model(str(base))
    try:
        pipe.save_pretrained(tmp_path / "aa")
    finally:
        pipe.set_base_model("")
        pipe.base_model = None
    (tmp_path / "aa" / "flow_encoder" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(tmp_path / "aa" / "camera_reference")
    with pytest.raises(IncompleteCheckpointError) as info:
        AnimateAnythingPipeline.from_pretrained(tmp_path / "aa")
    text = str(info.value)
    assert "flow_encoder/: diffusion_pytorch_model.safetensors" in text
    assert "camera_reference/: folder missing" in text
    assert "base_model" in text and str(base) in text  # the referenced base does not exist
    with pytest.raises(IncompleteCheckpointError, match=INDEX_FILE):
        AnimateAnythingPipeline.from_pretrained(tmp_path)


def test_a_changed_base_component_is_copied_not_referenced(tmp_path):
    pipe = build_tiny_pipeline(stage1=False)
    save_base(pipe, tmp_path / "cogvideox")
    pipe.set_base_model(str(tmp_path / "cogvideox"))
    pipe.save_pretrained(tmp_path / "aa")
    loaded = AnimateAnythingPipeline.from_pretrained(tmp_path / "aa")
    assert loaded.changed_base_components() == []
    with torch.no_grad():  # e.g. a LoRA merged into the transformer: dense change of one matrix
        loaded.transformer.transformer_blocks[0].attn1.to_q.weight.add_(0.01)
    assert loaded.changed_base_components() == ["transformer"]
    loaded.save_pretrained(tmp_path / "aa2")
    index = json.loads((tmp_path / "aa2" / INDEX_FILE).read_text())
    assert index["components"]["transformer"]["source"] == "folder"
    assert index["components"]["vae"]["source"] == "base" and not (tmp_path / "aa2" / "vae").exists()
    again = AnimateAnythingPipeline.from_pretrained(tmp_path / "aa2")
    assert torch.equal(
        again.transformer.transformer_blocks[0].attn1.to_q.weight,
        loaded.transformer.transformer_blocks[0].attn1.to_q.weight,
    )


def test_checkpoint_check_needs_no_torch(tmp_path):
    """The folder check (for the doctor and the Blender side) imports neither torch nor diffusers."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from backend.animateanything.checkpoint import plan_checkpoint; "
        f"p = plan_checkpoint({str(tmp_path)!r}); "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; print(p.missing[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert INDEX_FILE in out.stdout
