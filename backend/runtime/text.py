"""The T5 tokenizer and text encoder of a checkpoint: loading them (safetensors only) and encoding
prompts the way CogVideoX pipelines do. A tokenizer folder with only spiece.model needs the
sentencepiece and protobuf packages: `require_tokenizer_backend` says so before any work is done.
The prompt-embedding cache that spares loading T5 is backend/runtime/prompts.py.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import JobFailure
from .checkpoints import TEXT_COMPONENTS, Checkpoint, require_parts
from .devices import torch_dtype


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package ("google"), a broken module
        return False


# What transformers needs to read a tokenizer folder that has only spiece.model (no tokenizer.json),
# as the THUDM CogVideoX checkpoints ship it: transformers 5 converts the SentencePiece model with the
# sentencepiece package and its protobuf schema. Without them it falls back to a tiktoken reader and
# fails with a misleading "`tiktoken` is required" error: require_tokenizer_backend says it first.
SENTENCEPIECE_PACKAGES = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf"}


def sentencepiece_problem(tokenizer_dir: Path) -> str | None:
    """None when the tokenizer in `tokenizer_dir` can be read here, else which packages are missing."""
    if (tokenizer_dir / "tokenizer.json").is_file() or not (tokenizer_dir / "spiece.model").is_file():
        return None
    missing = [pip for module, pip in SENTENCEPIECE_PACKAGES.items() if not _importable(module)]
    return " and ".join(missing) or None


def require_tokenizer_backend(ckpt: Checkpoint) -> None:
    """JobFailure("missing_dependency") naming sentencepiece (and protobuf) when the checkpoint's
    tokenizer is spiece.model only and they are not installed: checked before any work is done."""
    folder = ckpt.path / "tokenizer"
    missing = sentencepiece_problem(folder)
    if missing:
        raise JobFailure(
            "missing_dependency",
            f"the tokenizer of {ckpt.source} is a SentencePiece model ({folder / 'spiece.model'}) and "
            f"reading it needs the Python package{'s' if ' and ' in missing else ''} {missing}, not "
            f"installed in {sys.executable}",
            f"Install sentencepiece into the generator's Python: `{sys.executable} -m pip install "
            "sentencepiece protobuf` (Preferences > Create Generator Environment installs both).",
        )


def load_tokenizer(ckpt: Checkpoint):
    """The checkpoint's T5 tokenizer (tokenizer.json, or spiece.model read with sentencepiece)."""
    require_tokenizer_backend(ckpt)
    folder = ckpt.path / "tokenizer"
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        if not (folder / "spiece.model").is_file() or (folder / "tokenizer.json").is_file():
            raise
        raise JobFailure(
            "missing_model",
            f"could not read the SentencePiece tokenizer {folder / 'spiece.model'}: "
            f"{type(exc).__name__}: {exc}",
            "Download the checkpoint's tokenizer/ folder again (spiece.model, tokenizer_config.json).",
        ) from exc


def load_text_encoder(ckpt: Checkpoint, *, dtype: str = "fp32"):
    """(tokenizer, T5 encoder) from safetensors, on the CPU: `UMT5EncoderModel` when the config's
    model_type is "umt5" (Wan), else `T5EncoderModel` (CogVideoX)."""
    require_parts(ckpt, TEXT_COMPONENTS)
    tokenizer = load_tokenizer(ckpt)
    from transformers import T5EncoderModel, UMT5EncoderModel

    umt5 = ckpt.config("text_encoder").get("model_type") == "umt5"
    text_encoder = (UMT5EncoderModel if umt5 else T5EncoderModel).from_pretrained(
        ckpt.path / "text_encoder", dtype=torch_dtype(dtype), use_safetensors=True, local_files_only=True
    )
    return tokenizer, text_encoder.eval()


def encode_prompts(
    tokenizer, text_encoder, prompts: list[str], max_sequence_length: int, device="cpu", *, masked=False
):
    """T5 embeddings (N, max_sequence_length, D) the way CogVideoX pipelines compute them: padded to
    max_length, truncated, special tokens added. `masked` (Wan): the encoder sees the attention mask
    and the embeddings after each prompt's length are zeros, as diffusers' Wan pipelines make them."""
    import torch

    if masked:
        inputs = tokenizer(
            prompts,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        mask = inputs.attention_mask.to(device)
        with torch.no_grad():
            out = text_encoder(inputs.input_ids.to(device), mask).last_hidden_state
        return out * mask.unsqueeze(-1).to(out.dtype)

    ids = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids.to(device))[0]
