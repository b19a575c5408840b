"""Reading and writing AnimateAnything checkpoint folders (torch): ``save_pretrained`` /
``from_pretrained`` of ``AnimateAnythingPipeline`` (:class:`CheckpointMixin`).

The folder layout, the index and the completeness check are :mod:`.checkpoint` (no torch); this
module loads and saves the components it lists, in safetensors only, and fingerprints the base
CogVideoX components so that a changed one is copied into the folder instead of referenced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .camera_reference import CameraReferenceModel
from .checkpoint import (
    BASE,
    FORMAT_VERSION,
    INDEX_FILE,
    STAGE1,
    TRAINED,
    IncompleteCheckpointError,
    plan_checkpoint,
)
from .flow_encoder import FlowEncoder3D
from .flow_fusion import FlowFusionBlock
from .flow_generation import FlowGenerationModel
from .flow_vae import FlowVAE
from .frequency_attention import FrequencyStabilizer

OWN_CLASSES = {
    "FlowEncoder3D": FlowEncoder3D,
    "FlowFusionBlock": FlowFusionBlock,
    "FrequencyStabilizer": FrequencyStabilizer,
    "FlowVAE": FlowVAE,
    "FlowGenerationModel": FlowGenerationModel,
    "CameraReferenceModel": CameraReferenceModel,
}


def component_fingerprint(component) -> str:
    """sha256 of a component's state, strided: ~4096 values per tensor (any fine-tune or merged LoRA
    changes them), plus names and shapes; for schedulers the config, for tokenizers the vocabulary size."""
    h = hashlib.sha256()
    if isinstance(component, torch.nn.Module):
        for name, t in component.state_dict().items():
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if t.device.type == "meta":
                continue
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            h.update(flat[::step].float().cpu().numpy().tobytes())
    elif hasattr(component, "config"):
        h.update(json.dumps(dict(component.config), sort_keys=True, default=str).encode())
    else:
        h.update(
            f"{type(component).__name__}{len(component) if hasattr(component, '__len__') else ''}".encode()
        )
    return h.hexdigest()


def save_checkpoint(
    components: dict,
    folder,
    class_name: str,
    base_model: str | None,
    changed: set[str],
    copy_base: bool | None,
) -> None:
    """Write ``components`` (name -> module, None skipped) as an AnimateAnything folder.

    Base components (``BASE``) are referenced (source "base") when ``base_model`` is known and
    ``copy_base`` is not True, except those in ``changed``; everything else is saved in safetensors."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if copy_base is False and not base_model:
        raise ValueError(
            "copy_base=False needs pipe.base_model (the CogVideoX folder or hub id) to reference"
        )
    reference = bool(base_model) and not copy_base
    entries = {}
    for name in TRAINED + STAGE1 + BASE:
        module = components.get(name)
        if module is None:
            continue
        source = "base" if (name in BASE and reference and name not in changed) else "folder"
        entries[name] = {"class": type(module).__name__, "library": _library(module), "source": source}
        if source == "folder":
            _save_component(module, out / name)
    index = {
        "_class_name": class_name,
        "format_version": FORMAT_VERSION,
        "base_model": base_model if reference else None,
        "components": entries,
    }
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


class CheckpointMixin:
    """``save_pretrained`` / ``from_pretrained`` in the AnimateAnything folder format, and the record
    of where the unchanged base components came from (``base_model``, ``base_path``, fingerprints).
    The pipeline's ``__init__`` sets ``base_model = base_path = None`` and ``_base_fingerprints = {}``."""

    def set_base_model(self, source: str, base_path: str | None = None) -> None:
        """Declare that the current transformer/vae/scheduler/text parts are those of ``source`` (a
        CogVideoX folder or hub id), unchanged: ``save_pretrained`` then references them and copies
        only a part whose fingerprint has changed since this call."""
        self.base_model = str(source)
        self.base_path = str(base_path or source)
        self._base_fingerprints = {
            name: component_fingerprint(getattr(self, name))
            for name in BASE
            if getattr(self, name, None) is not None
        }

    def changed_base_components(self) -> list[str]:
        """Base components whose fingerprint differs from the one recorded by :meth:`set_base_model`."""
        return [
            name
            for name, fp in self._base_fingerprints.items()
            if getattr(self, name, None) is None or component_fingerprint(getattr(self, name)) != fp
        ]

    def save_pretrained(self, save_directory, copy_base: bool | None = None, **kwargs) -> None:
        """Save the AnimateAnything parts in safetensors; reference the base CogVideoX parts.

        ``copy_base``: None (default) references ``self.base_model`` when it is known and copies the
        base components otherwise; True always copies them; False requires ``self.base_model``.
        A base component that changed since it was loaded (fingerprint, see :meth:`set_base_model`)
        is copied into the folder, never referenced.
        """
        reference = bool(self.base_model) and not copy_base
        save_checkpoint(
            {name: getattr(self, name, None) for name in TRAINED + STAGE1 + BASE},
            save_directory,
            class_name=type(self).__name__,
            base_model=self.base_model,
            changed=set(self.changed_base_components()) if reference else set(),
            copy_base=copy_base,
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        base_model: str | None = None,
        torch_dtype: torch.dtype | None = None,
        load_stage1: bool = True,
        load_text_encoder: bool = True,
        local_files_only: bool = True,
        **kwargs,
    ):
        """Load a folder written by :meth:`save_pretrained`.

        ``base_model`` overrides the referenced CogVideoX (folder or hub id; the hub only when
        ``local_files_only=False``). Everything that is missing is listed in one
        :class:`IncompleteCheckpointError`.
        """
        folder = pretrained_model_name_or_path
        plan = plan_checkpoint(folder, base_model, load_stage1, load_text_encoder, local_files_only)
        if plan.missing:  # everything missing, before any weights are loaded
            raise IncompleteCheckpointError(folder, plan.missing)
        loaded = {
            name: _load_component(path, plan.components[name], torch_dtype)
            for name, path in plan.locations.items()
        }
        pipe = cls(**{n: loaded.get(n) for n in TRAINED + STAGE1 + BASE})
        if plan.base_path is not None:
            pipe.set_base_model(plan.base_model, str(plan.base_path))
        else:
            pipe.base_path = str(folder)
        return pipe


def _library(module) -> str:
    return (
        "animateanything" if type(module).__name__ in OWN_CLASSES else type(module).__module__.split(".")[0]
    )


def _save_component(module, path: Path) -> None:
    if hasattr(module, "save_pretrained"):
        try:
            module.save_pretrained(path, safe_serialization=True)
        except TypeError:  # schedulers and tokenizers take no safe_serialization
            module.save_pretrained(path)
    elif hasattr(module, "save_config"):
        module.save_config(path)
    else:
        raise TypeError(f"cannot save component {type(module).__name__}")


def _load_component(path: Path, entry: dict, torch_dtype):
    class_name = entry["class"]
    common = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    if class_name in OWN_CLASSES:
        return OWN_CLASSES[class_name].from_pretrained(path, use_safetensors=True, **common).eval()
    if entry.get("library") == "transformers":
        import transformers

        if "Tokenizer" in class_name:
            return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        cls = getattr(transformers, class_name)
        kw = {"dtype": torch_dtype} if torch_dtype is not None else {}
        return cls.from_pretrained(path, use_safetensors=True, local_files_only=True, **kw).eval()
    import diffusers

    cls = getattr(diffusers, class_name)
    if "Scheduler" in class_name:
        return cls.from_pretrained(path)
    return cls.from_pretrained(path, use_safetensors=True, local_files_only=True, **common).eval()
