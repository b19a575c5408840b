"""Finding and loading a CogVideoX image-to-video checkpoint, and caching prompt embeddings.

A checkpoint is a local folder in diffusers layout (transformer/, vae/, scheduler/, text_encoder/,
tokenizer/) or a Hugging Face hub id. Weights are loaded from safetensors only (`use_safetensors=True`;
a folder with only .bin/.pt weights is refused: pickles can run code). Nothing is downloaded unless
the job allows it (`allow_download`); a hub id is otherwise looked up in the local Hugging Face cache.
Missing or incomplete checkpoints raise `JobFailure("missing_model")` naming the missing parts and
the folder that was searched.

Prompt embeddings (T5-XXL: ~9.8 GB (9.1 GiB) of bf16 weights for a (1, 226, 4096) output) are cached as
safetensors files keyed by a hash of the checkpoint folder, the prompt and the sequence length, so
a prompt seen before never loads the text encoder again.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import JobFailure

DEFAULT_MODEL = "THUDM/CogVideoX-5b-I2V"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# Files fetched when downloads are allowed: configs, safetensors weights, tokenizer files. No pickles.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer/*"]
PIPELINE_COMPONENTS = ("transformer", "vae", "scheduler")
TEXT_COMPONENTS = ("text_encoder", "tokenizer")


@dataclass
class Checkpoint:
    """A resolved checkpoint: `path` is a local folder; `source` is what the user gave."""

    source: str
    path: Path

    def config(self, component: str) -> dict:
        name = "scheduler_config.json" if component == "scheduler" else "config.json"
        return json.loads((self.path / component / name).read_text(encoding="utf-8"))


def offline_env(allow_download: bool) -> None:
    """Set HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) unless downloads are allowed. Call before the
    first import of huggingface_hub/diffusers for it to take full effect; the loaders below also
    pass local_files_only explicitly."""
    if allow_download:
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ.pop("TRANSFORMERS_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def resolve_checkpoint(model: str, *, allow_download: bool = False) -> Checkpoint:
    """A local folder or a hub id -> a local folder. "" means DEFAULT_MODEL.

    A hub id is looked up in the Hugging Face cache (no network) unless `allow_download`, in which
    case the configs, safetensors and tokenizer files are downloaded (no .bin/.pt)."""
    source = (model or DEFAULT_MODEL).strip()
    local = Path(os.path.expanduser(source))
    if local.exists() or not HUB_ID.fullmatch(source):
        if not local.is_dir():
            raise JobFailure(
                "missing_model",
                f"the CogVideoX checkpoint folder {local} does not exist",
                "Set the CogVideoX model in the add-on preferences to a folder holding transformer/, vae/, "
                "scheduler/, text_encoder/ and tokenizer/ (the diffusers layout), or to a hub id such as "
                f"{DEFAULT_MODEL}.",
            )
        return Checkpoint(source, local.resolve())
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ModuleNotFoundError as exc:
        raise JobFailure("missing_dependency", "huggingface_hub is not installed in this Python") from exc
    if allow_download:
        try:
            path = snapshot_download(source, allow_patterns=ALLOW_PATTERNS)
        except Exception as exc:  # network, authentication, unknown repository
            raise JobFailure(
                "missing_model",
                f"could not download {source} from the Hugging Face hub: {type(exc).__name__}: {exc}",
                "Check the hub id and the network connection, or download the model yourself and point the "
                "preferences at its folder.",
            ) from exc
        return Checkpoint(source, Path(path))
    try:
        path = snapshot_download(source, local_files_only=True)
    except LocalEntryNotFoundError as exc:
        raise JobFailure(
            "missing_model",
            f"{source} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}), there is no folder "
            f"{local.absolute()} either, and downloads are off",
            f"Allow downloads in the add-on preferences (about 20 GB for {DEFAULT_MODEL}), or download it "
            "with `huggingface-cli download` and set the folder in the preferences.",
        ) from exc
    return Checkpoint(source, Path(path))


def weights_stem(component: str) -> str:
    """The weights file name stem of a component: transformers' `model`, diffusers' otherwise."""
    return "model" if component == "text_encoder" else "diffusion_pytorch_model"


def weights_problem(folder: Path, stem: str) -> str | None:
    """None when `folder` holds safetensors weights named `stem` (single file or complete shards),
    else what is wrong (also used for AnimateAnything checkpoints: backend/animateanything/checkpoint.py)."""
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return None
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            return f"{index.name} is unreadable ({exc})"
        absent = [s for s in shards if not (folder / s).is_file()]
        if absent:
            return f"shards {', '.join(absent)} of {index.name} are missing"
        return None
    pickles = [p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    if pickles:
        return f"only non-safetensors weights ({', '.join(sorted(pickles))}); safetensors are required"
    return f"{single.name} (or {index.name})"


def missing_parts(path: Path, components=PIPELINE_COMPONENTS + TEXT_COMPONENTS) -> list[str]:
    """What is missing in a diffusers-layout CogVideoX folder, one readable line per problem."""
    problems = []
    for comp in components:
        folder = path / comp
        if not folder.is_dir():
            problems.append(f"{comp}/ (folder missing)")
            continue
        if comp == "scheduler":
            if not (folder / "scheduler_config.json").is_file():
                problems.append("scheduler/scheduler_config.json")
            continue
        if comp == "tokenizer":
            if not (folder / "tokenizer_config.json").is_file():
                problems.append("tokenizer/tokenizer_config.json")
            if not any((folder / n).is_file() for n in ("tokenizer.json", "spiece.model")):
                problems.append("tokenizer/tokenizer.json or tokenizer/spiece.model")
            continue
        if not (folder / "config.json").is_file():
            problems.append(f"{comp}/config.json")
        wrong = weights_problem(folder, weights_stem(comp))
        if wrong:
            problems.append(f"{comp}/ weights: {wrong}")
    return problems


def _safetensors_files(folder: Path, stem: str) -> list[Path]:
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / s for s in shards]
    single = folder / f"{stem}.safetensors"
    return [single] if single.is_file() else []


def count_parameters(ckpt: Checkpoint, component: str) -> int | None:
    """Number of stored tensor elements of a component, read from the safetensors headers only
    (no weights loaded, no torch); None when the component has no safetensors weights."""
    files = _safetensors_files(ckpt.path / component, weights_stem(component))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry["shape"]:
                    n *= int(dim)
                total += n
    return total


def require_parts(ckpt: Checkpoint, components) -> None:
    problems = missing_parts(ckpt.path, components)
    if problems:
        raise JobFailure(
            "missing_model",
            f"the CogVideoX checkpoint {ckpt.source} is incomplete; looked in {ckpt.path} and found no "
            + "; ".join(problems),
            "Download the whole checkpoint again (diffusers layout, safetensors weights), or allow downloads "
            "in the add-on preferences.",
        )


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_pipeline(ckpt: Checkpoint, *, dtype: str = "fp32", with_text_encoder: bool = False):
    """Load transformer, VAE and scheduler (and the text encoder and tokenizer when asked) from
    safetensors into a GuidedCogVideoXPipeline on the CPU."""
    require_parts(ckpt, PIPELINE_COMPONENTS + (TEXT_COMPONENTS if with_text_encoder else ()))
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXTransformer3DModel,
    )

    from .pipeline import GuidedCogVideoXPipeline

    td = torch_dtype(dtype)
    common = {"use_safetensors": True, "local_files_only": True, "torch_dtype": td}
    transformer = CogVideoXTransformer3DModel.from_pretrained(ckpt.path, subfolder="transformer", **common)
    vae = AutoencoderKLCogVideoX.from_pretrained(ckpt.path, subfolder="vae", **common)
    scheduler_cls = {"CogVideoXDPMScheduler": CogVideoXDPMScheduler}.get(
        ckpt.config("scheduler").get("_class_name"), CogVideoXDDIMScheduler
    )
    scheduler = scheduler_cls.from_pretrained(ckpt.path, subfolder="scheduler", local_files_only=True)
    tokenizer = text_encoder = None
    if with_text_encoder:
        tokenizer, text_encoder = load_text_encoder(ckpt, dtype=dtype)
    return GuidedCogVideoXPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
    )


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
    """(tokenizer, T5 encoder) from safetensors, on the CPU."""
    require_parts(ckpt, TEXT_COMPONENTS)
    tokenizer = load_tokenizer(ckpt)
    from transformers import T5EncoderModel

    text_encoder = T5EncoderModel.from_pretrained(
        ckpt.path / "text_encoder", dtype=torch_dtype(dtype), use_safetensors=True, local_files_only=True
    )
    return tokenizer, text_encoder.eval()


# ---------------------------------------------------------------- prompt embeddings cache


def default_cache_dir() -> Path:
    """ANIMATE_ANYTHING_CACHE, else $XDG_CACHE_HOME/animate_anything, else ~/.cache/animate_anything."""
    env = os.environ.get("ANIMATE_ANYTHING_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "animate_anything"


def prompt_key(ckpt: Checkpoint, prompt: str, max_sequence_length: int) -> str:
    """sha256 of (checkpoint folder, prompt, sequence length): the text encoder need not be present
    to find a cached embedding."""
    payload = json.dumps(
        {
            "model": str(ckpt.path),
            "prompt": prompt,
            "max_sequence_length": int(max_sequence_length),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cached_prompt_path(
    ckpt: Checkpoint, prompt: str, max_sequence_length: int, cache_dir: Path | None
) -> Path:
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache_dir / "prompt_embeds" / f"{prompt_key(ckpt, prompt, max_sequence_length)}.safetensors"


def encode_prompts(tokenizer, text_encoder, prompts: list[str], max_sequence_length: int, device="cpu"):
    """T5 embeddings (N, max_sequence_length, D) the way CogVideoX pipelines compute them: padded to
    max_length, truncated, special tokens added."""
    import torch

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


def prompt_embeddings(
    ckpt: Checkpoint,
    prompts: list[str],
    max_sequence_length: int,
    *,
    dtype: str = "fp32",
    device: str = "cpu",
    cache_dir: Path | None = None,
    use_cache: bool = True,
):
    """{prompt: (1, L, D) float32 CPU tensor}. Cached prompts are read from safetensors files; the
    others are encoded with the checkpoint's T5 (loaded, used on `device`, then freed) and cached.

    Returns (embeddings, loaded_text_encoder: bool)."""
    import torch
    from safetensors.torch import load_file, save_file

    found, todo = {}, []
    for prompt in dict.fromkeys(prompts):
        path = cached_prompt_path(ckpt, prompt, max_sequence_length, cache_dir)
        if use_cache and path.is_file():
            found[prompt] = load_file(str(path))["prompt_embeds"]
        else:
            todo.append(prompt)
    if not todo:
        return found, False
    tokenizer, text_encoder = load_text_encoder(ckpt, dtype=dtype)
    try:
        text_encoder.to(device)
        embeds = encode_prompts(tokenizer, text_encoder, todo, max_sequence_length, device).float().cpu()
    finally:
        del text_encoder
        gc.collect()
        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
    for prompt, emb in zip(todo, embeds):
        found[prompt] = emb.unsqueeze(0).contiguous()
        if use_cache:
            path = cached_prompt_path(ckpt, prompt, max_sequence_length, cache_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"prompt_embeds": found[prompt]}, str(tmp), metadata={"prompt": prompt[:1000]})
            os.replace(tmp, path)
    return found, True
