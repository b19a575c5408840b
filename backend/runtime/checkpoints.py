"""Finding a diffusers-layout checkpoint and checking that it is complete, without torch.

A checkpoint is a local folder in diffusers layout (transformer/, vae/, scheduler/, text_encoder/,
tokenizer/) or a Hugging Face hub id. Weights are loaded from safetensors only (`use_safetensors=True`;
a folder with only .bin/.pt weights is refused: pickles can run code). Nothing is downloaded unless
the job allows it (`allow_download`); a hub id is otherwise looked up in the local Hugging Face cache.
Missing or incomplete checkpoints raise `JobFailure("missing_model")` naming the missing parts and
the folder that was searched. Stdlib only: `python -m backend doctor` uses these checks without torch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from blender_animate.checkpoint_files import PIPELINE_COMPONENTS as PIPELINE_COMPONENTS
from blender_animate.checkpoint_files import TEXT_COMPONENTS as TEXT_COMPONENTS
from blender_animate.checkpoint_files import missing_parts as missing_parts
from blender_animate.checkpoint_files import weights_problem as weights_problem
from blender_animate.checkpoint_files import weights_stem as weights_stem

from ..errors import JobFailure

# The base model of both neural modes (guided, and the one AnimateAnything is trained on).
DEFAULT_MODEL = "THUDM/CogVideoX-5b-I2V"
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
# Files fetched when downloads are allowed: configs, safetensors weights, tokenizer files. No pickles.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer/*"]


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
