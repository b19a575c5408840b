"""Loading Wan checkpoints (backend/wan/load.py, limits.py): variants and limits from the configs
without torch, an original-format transformer file through `from_single_file` (Wan-Move's way),
pickles refused with a message that says to convert, incomplete folders named part by part."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from backend.errors import JobFailure
from backend.runtime.checkpoints import Checkpoint

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

# diffusers -> original Wan key names (the inverse of diffusers' single-file conversion), applied in
# order; norm2 / norm3 are swapped between the two layouts.
TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("attn1", "self_attn"),
    ("attn2", "cross_attn"),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".add_k_proj.", ".k_img."),
    (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    ("proj_out", "head.head"),
]


def original_key(key: str) -> str:
    if key == "scale_shift_table":
        return "head.modulation"
    key = key.replace(".scale_shift_table", ".modulation")
    for new, old in TO_ORIGINAL:
        key = key.replace(new, old)
    return key.replace("norm2", "norm__x").replace("norm3", "norm2").replace("norm__x", "norm3")


def test_variants_and_limits_come_from_the_configs(wan21_ckpt, wan_a14b_ckpt, wan_ti2v_ckpt):
    from backend.wan import limits, load

    got = {}
    for path in (wan21_ckpt, wan_a14b_ckpt, wan_ti2v_ckpt):
        ckpt = Checkpoint(str(path), path)
        lim = limits.checkpoint_limits(ckpt.config("transformer"), ckpt.config("vae"), load.model_index(ckpt))
        got[lim.variant] = (lim.multiple, lim.frame_step, load.components(ckpt))
    assert got == {
        "2.1-i2v": (16, 4, ("transformer", "vae", "scheduler", "image_encoder")),
        "2.2-i2v-a14b": (16, 4, ("transformer", "vae", "scheduler", "transformer_2")),
        "2.2-ti2v-5b": (32, 4, ("transformer", "vae", "scheduler")),
    }


def test_real_limits_refuse_and_warn():
    from backend.runtime import real_configs
    from backend.wan.limits import checkpoint_limits

    wan21 = checkpoint_limits(real_configs.wan_transformer("2.1-i2v"), real_configs.wan_vae("2.1-i2v"))
    assert wan21.check(480, 832, 81, 16.0) == []
    assert wan21.check(832, 480, 81, 16.0) == []  # portrait
    warnings = wan21.check(480, 720, 49, 8.0)  # CogVideoX's format: possible, not trained
    assert len(warnings) == 3 and "not a size" in warnings[0] and "81 frames" in warnings[1]
    with pytest.raises(ValueError, match="4N\\+1 frames") as err:
        wan21.check(480, 832, 80)
    assert "832x480" in str(err.value)
    ti2v = checkpoint_limits(
        real_configs.wan_transformer("2.2-ti2v-5b"),
        real_configs.wan_vae("2.2-ti2v-5b"),
        {"expand_timesteps": True},
    )
    assert ti2v.variant == "2.2-ti2v-5b" and ti2v.check(704, 1280, 121, 24.0) == []
    with pytest.raises(ValueError, match="multiples of 32"):
        ti2v.check(720, 1280, 121)  # 720 is not a multiple of 32 (Wan 2.2 VAE 16 x patch 2)
    assert (704, 1280) in ti2v.valid_sizes() and (1280, 704) in ti2v.valid_sizes()


def test_original_format_transformer_file_loads_through_from_single_file(wan21_ckpt, tmp_path):
    from safetensors.torch import save_file

    from backend.wan.load import load_pipeline

    stock = load_pipeline(Checkpoint(str(wan21_ckpt), wan21_ckpt))
    # A "fine-tune": the same architecture with other weights, saved with the original key names.
    torch.manual_seed(5)
    tuned = {k: torch.randn_like(v) for k, v in stock.transformer.state_dict().items()}
    original = {original_key(k): v.contiguous() for k, v in tuned.items()}
    assert "blocks.0.self_attn.q.weight" in original and "head.modulation" in original
    assert not any(k.startswith(("condition_embedder", "proj_out")) for k in original)
    file = tmp_path / "wan_move.safetensors"
    save_file(original, str(file))
    pipe = load_pipeline(Checkpoint(str(wan21_ckpt), wan21_ckpt), transformer_file=str(file))
    loaded = pipe.transformer.state_dict()
    assert loaded.keys() == tuned.keys()
    for k, v in tuned.items():
        assert torch.equal(loaded[k], v), k


def test_pickles_and_missing_files_are_refused(wan21_ckpt, tmp_path):
    from backend.wan.load import load_pipeline

    pth = tmp_path / "Wan-Move-14B-480P.pth"
    pth.write_bytes(b"not loaded")
    with pytest.raises(JobFailure) as err:
        load_pipeline(Checkpoint(str(wan21_ckpt), wan21_ckpt), transformer_file=str(pth))
    assert err.value.kind == "invalid_job" and "convert" in err.value.hint.lower()
    with pytest.raises(JobFailure) as err:
        load_pipeline(
            Checkpoint(str(wan21_ckpt), wan21_ckpt), transformer_file=str(tmp_path / "none.safetensors")
        )
    assert err.value.kind == "missing_model"
    broken = tmp_path / "broken"
    shutil.copytree(wan21_ckpt, broken)
    shutil.rmtree(broken / "transformer")
    with pytest.raises(JobFailure) as err:
        load_pipeline(Checkpoint(str(broken), broken))
    assert err.value.kind == "missing_model" and "transformer/ (folder missing)" in err.value.message
    assert json.loads((broken / "model_index.json").read_text())["image_encoder"][0] == "transformers"


def test_umt5_text_encoder_is_loaded_with_its_own_class(tmp_path):
    from transformers import UMT5Config, UMT5EncoderModel

    from backend.runtime.text import encode_prompts, load_text_encoder
    from tests.tiny_text import tiny_tokenizer

    folder = tmp_path / "ckpt"
    UMT5EncoderModel(
        UMT5Config(
            d_model=32,
            d_ff=37,
            d_kv=8,
            num_heads=4,
            num_layers=2,
            vocab_size=100,
            relative_attention_num_buckets=8,
        )
    ).save_pretrained(folder / "text_encoder")
    tiny_tokenizer().save_pretrained(folder / "tokenizer")
    tokenizer, encoder = load_text_encoder(Checkpoint(str(folder), folder))
    assert type(encoder).__name__ == "UMT5EncoderModel"
    e = encode_prompts(tokenizer, encoder, ["a cat", "a red dog runs"], 8, masked=True)
    assert e.shape == (2, 8, 32)
    assert torch.all(e[0, 3:] == 0) and torch.all(e[1, 5:] == 0)  # zero after each prompt (+ </s>)
    assert np.abs(e[1, :5].numpy()).min() > 0
