"""The two optional models of a picked image, as files: where they are and whether they are whole.

Stdlib only (the doctor uses it without torch). A model is a folder in the transformers layout:
config.json (its ``model_type`` says which model it is), safetensors weights (``model.safetensors``
or complete shards; .bin/.pt are refused, never unpickled) and preprocessor_config.json (image size,
mean and std; read by our own preprocessing, which needs no torchvision).

- SAM 2: ``model_type`` "sam2" (transformers ``Sam2Model``, e.g. facebook/sam2.1-hiera-tiny,
  Apache-2.0). SAM 1 (``SamModel``) is not used: its letterboxed preprocessing differs.
- Depth Anything V2: ``model_type`` "depth_anything" (``DepthAnythingForDepthEstimation``, e.g.
  depth-anything/Depth-Anything-V2-Small-hf, Apache-2.0 for Small).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from blender_animate.checkpoint_files import weights_problem

SEGMENT_TYPES = {"sam2": "Sam2Model"}
DEPTH_TYPES = {"depth_anything": "DepthAnythingForDepthEstimation"}
SEGMENT_EXAMPLE = "facebook/sam2.1-hiera-tiny"
DEPTH_EXAMPLE = "depth-anything/Depth-Anything-V2-Small-hf"
# What a download of a hub id fetches (configs and safetensors only).
ALLOW_PATTERNS = ["*.json", "*.safetensors"]


def model_type(folder: Path) -> str | None:
    """config.json's model_type, or None when it is absent or unreadable."""
    try:
        return str(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None


def folder_problems(folder: Path, types: dict) -> list[str]:
    """What `folder` lacks to load as one of `types` ({model_type: class}), one line each; [] when
    complete. A folder of .bin/.pt weights only is refused (convert it to safetensors)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []
    kind = model_type(folder)
    if not (folder / "config.json").is_file():
        problems.append("config.json")
    elif kind not in types:
        problems.append(f"config.json says model_type {kind!r}, expected {' or '.join(map(repr, types))}")
    weights = weights_problem(folder, "model")
    if weights and "only non-safetensors" in weights:
        problems.append(
            f"{weights}: convert the weights to model.safetensors (e.g. load the folder once with "
            "transformers and save_pretrained(..., safe_serialization=True)), or download the "
            "safetensors version"
        )
    elif weights:
        problems.append(weights)
    if not (folder / "preprocessor_config.json").is_file():
        problems.append("preprocessor_config.json (the image processor's settings)")
    return problems


def resolve_folder(source: str, *, allow_download: bool, what: str, example: str) -> Path:
    """A local folder, or a hub id from the Hugging Face cache (downloaded, configs and safetensors
    only, with `allow_download`). Raises ModelUnavailable saying what to do."""
    source = source.strip()
    local = Path(os.path.expanduser(source))
    if local.exists() or "/" not in source or source.count("/") > 1:
        if not local.is_dir():
            raise ModelUnavailable(f"the {what} folder {local} does not exist")
        return local.resolve()
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelUnavailable(f"{source} is a hub id, but huggingface_hub is not installed") from exc
    try:
        if allow_download:
            return Path(snapshot_download(source, allow_patterns=ALLOW_PATTERNS))
        return Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not cached, network, unknown repository
        how = (
            "could not be downloaded"
            if allow_download
            else "is not in the Hugging Face cache and downloads are off"
        )
        raise ModelUnavailable(
            f"{source} {how} ({type(exc).__name__}); set the {what} preference to a folder such as a "
            f"download of {example}"
        ) from exc


def check_folder(folder: Path, types: dict, what: str) -> None:
    """Raise ModelUnavailable listing `folder_problems` when there are any."""
    problems = folder_problems(folder, types)
    if problems:
        raise ModelUnavailable(f"the {what} folder {folder} is incomplete: " + "; ".join(problems))


def preprocessor(folder: Path) -> dict:
    """preprocessor_config.json as a dict ({} when unreadable)."""
    try:
        data = json.loads((Path(folder) / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class ModelUnavailable(RuntimeError):
    """An optional model cannot be used (missing, incomplete, .bin only, no transformers): the
    picked layout falls back (segmentation without a model, the plane) and says why."""
