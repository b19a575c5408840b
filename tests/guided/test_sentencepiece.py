"""The THUDM checkpoints' tokenizer: tokenizer/ holds spiece.model, tokenizer_config.json (T5Tokenizer),
special_tokens_map.json and added_tokens.json, and no tokenizer.json. A tiny SentencePiece model is
trained offline and laid out that way (tests/tiny_text.py) in a tiny checkpoint that takes 226 text
tokens like the real ones; the real loading code reads it, encodes to 226 tokens and runs the pipeline
and the mode. Without sentencepiece the user is told to install it."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from backend.errors import JobFailure

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")
pytest.importorskip("google.protobuf")

pytestmark = pytest.mark.torch

REAL_LAYOUT = {"spiece.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}
MAX_LEN = 226  # max_sequence_length of CogVideoX-5b-I2V and 1.5


@pytest.fixture(scope="module")
def spm_ckpt(tmp_path_factory):
    """A 1.0-style tiny checkpoint (16x16, 9 frames) taking 226 text tokens, with a SentencePiece
    tokenizer in the THUDM layout."""
    from tests.tiny_text import save_sentencepiece_tokenizer

    from .conftest import build_checkpoint

    path = tmp_path_factory.mktemp("cogvideox-tiny-spm")
    build_checkpoint(path, "1.0", seed=2, max_text_seq_length=MAX_LEN)
    shutil.rmtree(path / "tokenizer")
    save_sentencepiece_tokenizer(path / "tokenizer")
    return path


def test_layout_is_the_real_one_and_t5_tokenizer_reads_it(spm_ckpt):
    from transformers import T5Tokenizer

    from backend.runtime.checkpoints import Checkpoint, missing_parts
    from backend.runtime.text import encode_prompts, load_text_encoder

    assert {p.name for p in (spm_ckpt / "tokenizer").iterdir()} == REAL_LAYOUT
    assert missing_parts(spm_ckpt) == []
    tokenizer, text_encoder = load_text_encoder(Checkpoint("spm", spm_ckpt))
    assert isinstance(tokenizer, T5Tokenizer)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) <= text_encoder.config.vocab_size
    # The ids are the SentencePiece model's own, then </s>, then padding to 226.
    sp = spm.SentencePieceProcessor(model_file=str(spm_ckpt / "tokenizer" / "spiece.model"))
    prompt = "a red cat walks on the moon"
    ids = tokenizer(
        [prompt], padding="max_length", max_length=MAX_LEN, truncation=True, return_tensors="pt"
    ).input_ids[0]
    expected = sp.encode(prompt) + [1]
    assert ids.shape == (MAX_LEN,) and ids[: len(expected)].tolist() == expected
    assert set(ids[len(expected) :].tolist()) == {0}
    assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == len(tokenizer) - 1  # T5's sentinel order
    embeds = encode_prompts(tokenizer, text_encoder, [prompt, ""], MAX_LEN)
    assert embeds.shape == (2, MAX_LEN, 32) and torch.isfinite(embeds).all()


def test_pipeline_encodes_226_tokens_and_runs(spm_ckpt, tmp_path):
    """The pipeline's own prompt encoding (tokenizer + T5 in the pipeline) and the cached
    embeddings of prompts.prompt_embeddings (what the mode passes) give the same video."""
    from PIL import Image

    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import Checkpoint
    from backend.runtime.prompts import prompt_embeddings

    from .conftest import reference_image, shifted_video

    ckpt = Checkpoint("spm", spm_ckpt)
    pipe = load_pipeline(ckpt, with_text_encoder=True)
    pipe.set_progress_bar_config(disable=True)
    image = reference_image(16, 16)
    common = dict(
        image=Image.fromarray(image),
        height=16,
        width=16,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=6.0,
        max_sequence_length=MAX_LEN,
        output_type="np",
        video=shifted_video(image, 9),
        strength=0.5,
    )
    prompt = "camera moves left slowly"
    frames = pipe(
        prompt=prompt, negative_prompt="", generator=torch.Generator().manual_seed(0), **common
    ).frames
    assert frames.shape == (1, 9, 16, 16, 3) and np.isfinite(frames).all()

    embeds, loaded = prompt_embeddings(ckpt, [prompt, ""], MAX_LEN, cache_dir=tmp_path / "cache")
    assert loaded and embeds[prompt].shape == (1, MAX_LEN, 32)
    no_text = load_pipeline(ckpt)
    no_text.set_progress_bar_config(disable=True)
    again = no_text(
        prompt_embeds=embeds[prompt],
        negative_prompt_embeds=embeds[""],
        generator=torch.Generator().manual_seed(0),
        **common,
    ).frames
    np.testing.assert_allclose(again, frames, atol=1e-5)


def test_mode_runs_on_a_sentencepiece_checkpoint(spm_ckpt, tmp_path, monkeypatch):
    from backend.modes import guided

    from .test_mode import F, H, Recorder, W, context, guided_job

    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))
    result = guided.generate(context(guided_job(tmp_path / "job", spm_ckpt), Recorder())).check(F, H, W)
    assert result.frames.shape == (F, H, W, 3) and result.info["prompt_embeddings"] == "encoded"
    cached = list((tmp_path / "cache" / "prompt_embeds").glob("*.safetensors"))
    assert len(cached) == 2  # prompt and negative prompt, 226 tokens each
    from safetensors.torch import load_file

    assert all(load_file(str(p))["prompt_embeds"].shape == (1, MAX_LEN, 32) for p in cached)


@pytest.mark.parametrize("absent", ["sentencepiece", "google.protobuf"])
def test_missing_sentencepiece_says_to_install_it(spm_ckpt, tiny_ckpt, tmp_path, monkeypatch, absent):
    from backend.modes import guided
    from backend.runtime.checkpoints import Checkpoint
    from backend.runtime.text import load_text_encoder

    from .test_mode import Recorder, context, guided_job

    monkeypatch.setitem(sys.modules, absent, None)  # find_spec -> None, `import` -> ModuleNotFoundError
    with pytest.raises(JobFailure) as err:
        load_text_encoder(Checkpoint("spm", spm_ckpt))
    package = "sentencepiece" if absent == "sentencepiece" else "protobuf"
    assert err.value.kind == "missing_dependency"
    assert f"needs the Python package {package}" in err.value.message and "spiece.model" in err.value.message
    assert "pip install sentencepiece protobuf" in err.value.hint
    # The mode says so before any work (no preview), and a tokenizer.json checkpoint is not affected.
    monkeypatch.setenv("ANIMATE_ANYTHING_CACHE", str(tmp_path / "cache"))
    rec = Recorder()
    with pytest.raises(JobFailure) as err:
        guided.generate(context(guided_job(tmp_path / "job", spm_ckpt), rec))
    assert err.value.kind == "missing_dependency" and package in err.value.message
    assert not any(e.get("stage") == "flow" for e in rec.events)
    tokenizer, _ = load_text_encoder(Checkpoint("tiny", tiny_ckpt))
    assert tokenizer("a cat").input_ids[-1] == 1
