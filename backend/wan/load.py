"""Loading a Wan 2.x image-to-video checkpoint into a GuidedWanPipeline on the CPU (safetensors only).

A checkpoint is a diffusers-layout folder (model_index.json; transformer/, optional transformer_2/,
vae/, scheduler/, text_encoder/ + tokenizer/ (UMT5), image_encoder/ + image_processor/ (CLIP, Wan 2.1
only)). `transformer_file` replaces the transformer by an original-format single file (for Wan-Move:
Ruihang/Wan-Move-14B-480P's weights over Wan2.1-I2V-14B-480P's diffusers folder), loaded with
`WanTransformer3DModel.from_single_file` and the folder's transformer config; `.safetensors` only
(`.pth` / `.pt` / `.bin` are refused: convert them first). Finding and checking folders is
backend/runtime/checkpoints.py; LoRA weights are loaded by mode guided
(backend/modes/guided.py, `_load_lora`).
"""

from __future__ import annotations

import json
from pathlib import Path

from blender_animate.model_limits import CONVERT_HINT, PICKLE_SUFFIXES

from ..errors import JobFailure
from ..runtime.checkpoints import Checkpoint, require_parts, weights_problem
from ..runtime.devices import torch_dtype

WAN_COMPONENTS = ("transformer", "vae", "scheduler")


def model_index(ckpt: Checkpoint) -> dict:
    path = ckpt.path / "model_index.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def components(ckpt: Checkpoint) -> tuple[str, ...]:
    """The components this Wan folder needs besides text: + transformer_2 (A14B), + image_encoder
    (Wan 2.1, whose transformer has image_dim)."""
    index = model_index(ckpt)
    parts = WAN_COMPONENTS
    if (index.get("transformer_2") or [None])[0]:
        parts += ("transformer_2",)
    if (index.get("image_encoder") or [None])[0]:
        parts += ("image_encoder",)
    return parts


def check_single_file(path: str) -> Path:
    """The transformer file, or JobFailure: missing, or not .safetensors."""
    file = Path(path).expanduser()
    if file.suffix.lower() in PICKLE_SUFFIXES:
        raise JobFailure(
            "invalid_job", f"{file} is a pickled checkpoint; only .safetensors are loaded", CONVERT_HINT
        )
    if file.suffix.lower() != ".safetensors" or not file.is_file():
        raise JobFailure(
            "missing_model",
            f"the transformer file {file} does not exist or is not a .safetensors file",
            "Point the Wan transformer file at the .safetensors weights (e.g. Wan-Move-14B-480P).",
        )
    return file


def load_pipeline(
    ckpt: Checkpoint, *, dtype: str = "fp32", transformer_file: str = "", with_text_encoder=False
):
    """GuidedWanPipeline on the CPU with transformer(s), VAE, scheduler, CLIP (2.1) and, when asked,
    the UMT5 tokenizer and text encoder."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    from .pipeline import GuidedWanPipeline

    parts = components(ckpt)
    require_parts(ckpt, tuple(p for p in parts if p != "image_encoder"))
    td = torch_dtype(dtype)
    common = {"use_safetensors": True, "local_files_only": True, "torch_dtype": td}
    if transformer_file:
        file = check_single_file(transformer_file)
        transformer = WanTransformer3DModel.from_single_file(
            str(file), config=str(ckpt.path), subfolder="transformer", torch_dtype=td, local_files_only=True
        )
    else:
        transformer = WanTransformer3DModel.from_pretrained(ckpt.path, subfolder="transformer", **common)
    transformer_2 = None
    if "transformer_2" in parts:
        transformer_2 = WanTransformer3DModel.from_pretrained(ckpt.path, subfolder="transformer_2", **common)
    vae = AutoencoderKLWan.from_pretrained(
        ckpt.path,
        subfolder="vae",
        torch_dtype=torch_dtype("fp32"),
        use_safetensors=True,
        local_files_only=True,
    )
    scheduler_cls = {"FlowMatchEulerDiscreteScheduler": FlowMatchEulerDiscreteScheduler}.get(
        ckpt.config("scheduler").get("_class_name"), UniPCMultistepScheduler
    )
    scheduler = scheduler_cls.from_pretrained(ckpt.path, subfolder="scheduler", local_files_only=True)
    image_encoder = image_processor = None
    if "image_encoder" in parts:
        from transformers import CLIPImageProcessor, CLIPVisionModel

        problem = weights_problem(ckpt.path / "image_encoder", "model")
        if problem:
            raise JobFailure("missing_model", f"{ckpt.source}: image_encoder/ weights: {problem}")
        image_encoder = CLIPVisionModel.from_pretrained(
            ckpt.path / "image_encoder", dtype=td, use_safetensors=True, local_files_only=True
        )
        image_processor = CLIPImageProcessor.from_pretrained(
            ckpt.path / "image_processor", local_files_only=True
        )
    tokenizer = text_encoder = None
    if with_text_encoder:
        from ..runtime.text import load_text_encoder

        tokenizer, text_encoder = load_text_encoder(ckpt, dtype=dtype)
    index = model_index(ckpt)
    return GuidedWanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=image_processor,
        image_encoder=image_encoder,
        transformer=transformer,
        transformer_2=transformer_2,
        boundary_ratio=index.get("boundary_ratio"),
        expand_timesteps=bool(index.get("expand_timesteps", False)),
    )
