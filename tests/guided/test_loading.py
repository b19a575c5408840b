"""Checkpoint resolution and loading: local folders, hub ids offline, incomplete checkpoints,
safetensors only, and the prompt-embedding cache that lets the text encoder be skipped."""

from __future__ import annotations

import json
import shutil

import pytest

from backend.errors import JobFailure

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_local_folder_loads_through_the_real_loaders(tiny_ckpt):
    from backend.guided.load import load_pipeline
    from backend.guided.pipeline import GuidedCogVideoXPipeline
    from backend.runtime.checkpoints import resolve_checkpoint

    ckpt = resolve_checkpoint(str(tiny_ckpt))
    assert ckpt.path == tiny_ckpt.resolve()
    pipe = load_pipeline(ckpt, dtype="fp32")
    assert isinstance(pipe, GuidedCogVideoXPipeline)
    assert pipe.text_encoder is None and pipe.tokenizer is None
    assert pipe.transformer.config.sample_frames == 9
    assert pipe.transformer.dtype == torch.float32


def test_missing_folder_names_where_it_looked(tmp_path):
    from backend.runtime.checkpoints import resolve_checkpoint

    with pytest.raises(JobFailure) as err:
        resolve_checkpoint(str(tmp_path / "nowhere"))
    assert err.value.kind == "missing_model"
    assert str(tmp_path / "nowhere") in err.value.message


def test_hub_id_offline_not_cached_names_the_cache():
    from huggingface_hub import constants

    from backend.runtime.checkpoints import resolve_checkpoint

    with pytest.raises(JobFailure) as err:
        resolve_checkpoint("animate-anything-tests/no-such-model", allow_download=False)
    assert err.value.kind == "missing_model"
    assert "no-such-model" in err.value.message and constants.HF_HUB_CACHE in err.value.message
    assert "allow downloads" in err.value.hint.lower()


def test_incomplete_checkpoint_lists_what_is_missing(tiny_ckpt, tmp_path):
    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import PIPELINE_COMPONENTS, require_parts, resolve_checkpoint

    broken = copy(tiny_ckpt, tmp_path / "broken")
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(broken / "scheduler")
    ckpt = resolve_checkpoint(str(broken))
    with pytest.raises(JobFailure) as err:
        load_pipeline(ckpt)
    msg = err.value.message
    assert err.value.kind == "missing_model"
    assert "transformer/ weights" in msg and "scheduler/ (folder missing)" in msg and str(broken) in msg
    assert "vae" not in msg  # complete parts are not blamed
    with pytest.raises(JobFailure, match="scheduler"):
        require_parts(ckpt, PIPELINE_COMPONENTS)


def test_pickle_weights_are_refused(tiny_ckpt, tmp_path):
    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import resolve_checkpoint

    ckpt_dir = copy(tiny_ckpt, tmp_path / "pickled")
    weights = ckpt_dir / "vae" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(JobFailure) as err:
        load_pipeline(resolve_checkpoint(str(ckpt_dir)))
    assert (
        "safetensors are required" in err.value.message and "diffusion_pytorch_model.bin" in err.value.message
    )


def test_sharded_weights_with_a_missing_shard(tiny_ckpt, tmp_path):
    from backend.runtime.checkpoints import missing_parts

    ckpt_dir = copy(tiny_ckpt, tmp_path / "sharded")
    folder = ckpt_dir / "transformer"
    (folder / "diffusion_pytorch_model.safetensors").rename(
        folder / "diffusion_pytorch_model-00001-of-00002.safetensors"
    )
    index = {
        "weight_map": {
            "a": "diffusion_pytorch_model-00001-of-00002.safetensors",
            "b": "diffusion_pytorch_model-00002-of-00002.safetensors",
        }
    }
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    problems = missing_parts(ckpt_dir)
    assert problems == [
        "transformer/ weights: shards diffusion_pytorch_model-00002-of-00002.safetensors of "
        "diffusion_pytorch_model.safetensors.index.json are missing"
    ]


def test_prompt_embeddings_cached_then_text_encoder_skipped(tiny_ckpt, tmp_path):
    from diffusers import CogVideoXImageToVideoPipeline

    from backend.guided.load import load_pipeline
    from backend.runtime.checkpoints import resolve_checkpoint
    from backend.runtime.prompts import prompt_embeddings

    ckpt_dir = copy(tiny_ckpt, tmp_path / "ckpt")
    ckpt = resolve_checkpoint(str(ckpt_dir))
    cache = tmp_path / "cache"
    first, loaded = prompt_embeddings(ckpt, ["a red cat", ""], 16, cache_dir=cache)
    assert loaded is True
    assert len(list((cache / "prompt_embeds").glob("*.safetensors"))) == 2

    # The same numbers as the stock pipeline's own T5 path.
    stock = CogVideoXImageToVideoPipeline(**load_pipeline(ckpt, with_text_encoder=True).components)
    expected = stock._get_t5_prompt_embeds(
        "a red cat", max_sequence_length=16, device="cpu", dtype=torch.float32
    )
    torch.testing.assert_close(first["a red cat"], expected)

    # Without a text encoder on disk the cached prompts still work; a new prompt names what is missing.
    shutil.rmtree(ckpt_dir / "text_encoder")
    again, loaded = prompt_embeddings(ckpt, ["a red cat", ""], 16, cache_dir=cache)
    assert loaded is False
    torch.testing.assert_close(again["a red cat"], first["a red cat"], rtol=0, atol=0)
    with pytest.raises(JobFailure) as err:
        prompt_embeddings(ckpt, ["a blue dog"], 16, cache_dir=cache)
    assert err.value.kind == "missing_model" and "text_encoder/ (folder missing)" in err.value.message


def test_prompt_cache_key_depends_on_model_prompt_and_length(tiny_ckpt, tmp_path):
    from backend.runtime.checkpoints import Checkpoint
    from backend.runtime.prompts import prompt_key

    a = Checkpoint("a", tiny_ckpt)
    b = Checkpoint("b", tmp_path)
    keys = {
        prompt_key(a, "cat", 16),
        prompt_key(b, "cat", 16),
        prompt_key(a, "dog", 16),
        prompt_key(a, "cat", 226),
    }
    assert len(keys) == 4
    assert prompt_key(a, "cat", 16) == prompt_key(Checkpoint("other name", tiny_ckpt), "cat", 16)


def test_parameter_count_from_safetensors_headers(tiny_ckpt, tiny_pipe):
    from backend.runtime.checkpoints import Checkpoint, count_parameters

    ckpt = Checkpoint("tiny", tiny_ckpt)
    for name in ("transformer", "vae", "text_encoder"):
        model = getattr(tiny_pipe, name)
        expected = sum(t.numel() for t in model.state_dict().values())
        # transformers ties T5's embed_tokens to `shared`: stored once, listed twice in state_dict
        if name == "text_encoder":
            expected -= model.encoder.embed_tokens.weight.numel()
        assert count_parameters(ckpt, name) == expected, name
    assert count_parameters(Checkpoint("none", tiny_ckpt.parent), "vae") is None
