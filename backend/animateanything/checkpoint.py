"""The AnimateAnything checkpoint folder: its layout, and what is missing from one (no torch).

Layout (written by ``AnimateAnythingPipeline.save_pretrained``)::

    animateanything_index.json   {"format_version": 1, "base_model": folder | hub id | null,
                                  "components": {name: {"class", "library", "source": "folder" | "base"}}}
    <name>/                      one subfolder per component with source "folder" (safetensors)

Components with source "base" live in the referenced CogVideoX folder (diffusers layout). This
module imports nothing heavy (the safetensors checks are the runtime's, backend/runtime/checkpoints.py),
so ``python -m backend doctor`` (the preferences' Check button) can check a folder without torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.checkpoints import weights_problem, weights_stem

INDEX_FILE = "animateanything_index.json"
FORMAT_VERSION = 1
TRAINED = ("flow_encoder", "flow_fusion", "frequency_stabilizer")
STAGE1 = ("flow_vae", "flow_generator", "camera_reference", "image_vae", "flow_scheduler")
BASE = ("transformer", "vae", "scheduler", "text_encoder", "tokenizer")
REQUIRED = TRAINED + ("transformer", "vae", "scheduler")


class IncompleteCheckpointError(FileNotFoundError):
    """A checkpoint folder lacks parts; ``missing`` lists them (one readable line each)."""

    def __init__(self, folder, missing: list[str]):
        self.folder = str(folder)
        self.missing = list(missing)
        super().__init__(
            f"AnimateAnything checkpoint {folder} is incomplete; missing:\n  - " + "\n  - ".join(self.missing)
        )


def resolve_base(source: str | None, local_files_only: bool) -> tuple[Path | None, str | None]:
    if not source:
        return (
            None,
            "base_model: the checkpoint references a CogVideoX base but names none (pass base_model=)",
        )
    local = Path(os.path.expanduser(source))
    if local.is_dir():
        return local.resolve(), None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=local_files_only)), None
    except Exception as exc:  # not a hub id, not cached, no network
        where = "a folder or a cached hub id" if local_files_only else "a folder or a hub id"
        return None, f"base_model {source!r}: not found as {where} ({type(exc).__name__})"


def missing_in_folder(path: Path, name: str, in_base: bool) -> list[str]:
    """What the folder of component `name` lacks (its config and safetensors weights), one line each."""
    label = f"{name}/ (in the base model {path.parent})" if in_base else f"{name}/"
    if not path.is_dir():
        return [f"{label}: folder missing"]
    if name in ("scheduler", "flow_scheduler"):
        return [] if (path / "scheduler_config.json").is_file() else [f"{label}: scheduler_config.json"]
    if name == "tokenizer":
        return [] if (path / "tokenizer_config.json").is_file() else [f"{label}: tokenizer_config.json"]
    problems = [] if (path / "config.json").is_file() else [f"{label}: config.json"]
    wrong = weights_problem(path, weights_stem(name))
    if wrong:
        problems.append(f"{label}: {wrong}")
    return problems


@dataclass
class CheckpointPlan:
    """Where each wanted component is, and what is missing (empty: loadable)."""

    components: dict = field(default_factory=dict)
    locations: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    base_model: str | None = None
    base_path: Path | None = None

    @property
    def has_stage1(self) -> bool:
        return all(name in self.components for name in STAGE1)


def plan_checkpoint(
    folder,
    base_model: str | None = None,
    load_stage1: bool = True,
    load_text_encoder: bool = True,
    local_files_only: bool = True,
) -> CheckpointPlan:
    """Read the index of ``folder`` and check every wanted component (files only, nothing loaded).

    ``base_model`` overrides the index's base. Returns a :class:`CheckpointPlan` whose ``missing``
    lists every problem, one readable line each.
    """
    folder = Path(folder)
    plan = CheckpointPlan()
    index_path = folder / INDEX_FILE
    if not index_path.is_file():
        plan.missing.append(f"{INDEX_FILE} (not an AnimateAnything checkpoint folder)")
        return plan
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        plan.missing.append(f"{INDEX_FILE}: unreadable ({exc})")
        return plan
    if index.get("format_version") != FORMAT_VERSION:
        plan.missing.append(f"{INDEX_FILE}: unsupported format_version {index.get('format_version')!r}")
        return plan
    comps = plan.components = dict(index.get("components", {}))
    wanted = [n for n in REQUIRED if n in comps]
    if load_text_encoder:
        wanted += [n for n in ("text_encoder", "tokenizer") if n in comps]
    if load_stage1:
        wanted += [n for n in STAGE1 if n in comps]
    plan.missing += [f"{n}: not listed in {INDEX_FILE}" for n in REQUIRED if n not in comps]
    plan.base_model = base_model or index.get("base_model")
    if any(comps[n].get("source") == "base" for n in wanted):
        plan.base_path, problem = resolve_base(plan.base_model, local_files_only)
        if problem:
            plan.missing.append(problem)
    for name in wanted:
        in_base = comps[name].get("source") == "base"
        root = plan.base_path if in_base else folder
        if root is None:
            continue
        plan.locations[name] = Path(root) / name
        plan.missing += missing_in_folder(plan.locations[name], name, in_base)
    return plan
