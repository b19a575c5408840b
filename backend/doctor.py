"""`python -m backend doctor`: what this Python can run, in words a user can act on.

Reports the interpreter, the packages each mode needs (with versions), torch's devices and their
free memory, and the models it finds in the Hugging Face cache and in folders given with
`--models`. `--json` prints the same as one JSON object. Exit code 0 when at least the preview
can run, 1 otherwise. Imports torch only if it is installed (that takes a few seconds).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

# stdlib only (no torch): the doctor checks model folders from their files, with the checks the
# modes run before loading (runtime.checkpoints.missing_parts, animateanything.checkpoint)
from .animateanything.checkpoint import INDEX_FILE, plan_checkpoint
from .runtime.checkpoints import PIPELINE_COMPONENTS, TEXT_COMPONENTS, missing_parts
from .runtime.devices import free_memory
from .runtime.memory import OFFLOADS, GiB, ModelSpec, plan_memory
from .segment.models import (
    DEPTH_EXAMPLE,
    DEPTH_TYPES,
    SEGMENT_EXAMPLE,
    SEGMENT_TYPES,
    folder_problems,
    model_type,
)

# module, distribution names (first found wins), what it is for, needed by
PACKAGES = [
    ("numpy", ("numpy",), "arrays", "all modes"),
    ("PIL", ("Pillow", "pillow"), "reading and writing images", "all modes"),
    (
        "cv2",
        ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
        "reference-video flow",
        "optional",
    ),
    ("scipy", ("scipy",), "scientific routines (the preview does not need it)", "optional"),
    ("numba", ("numba",), "the preview's per-pixel work compiled (about 2x faster)", "optional"),
    ("av", ("av",), "writing video.mp4 and flow.mp4", "optional"),
    ("torch", ("torch",), "neural networks", "guided, animateanything"),
    ("diffusers", ("diffusers",), "CogVideoX pipelines", "guided, animateanything"),
    ("transformers", ("transformers",), "the T5 text encoder", "guided, animateanything"),
    ("accelerate", ("accelerate",), "memory offloading", "guided, animateanything (optional)"),
    ("safetensors", ("safetensors",), "model files", "guided, animateanything"),
]
# Hub ids of image-to-video models the guided mode can use (folder names in the HF cache).
KNOWN_MODELS = {
    "THUDM/CogVideoX-5b-I2V": "guided (CogVideoX 1.0, 720x480, 49 frames)",
    "THUDM/CogVideoX1.5-5B-I2V": "guided (CogVideoX 1.5, 81 frames)",
    "zai-org/CogVideoX-5b-I2V": "guided (CogVideoX 1.0, 720x480, 49 frames)",
    "zai-org/CogVideoX1.5-5B-I2V": "guided (CogVideoX 1.5, 81 frames)",
    "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers": "guided (Wan 2.1 I2V 14B, 832x480, 81 frames)",
    "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers": "guided (Wan 2.1 I2V 14B, 1280x720, 81 frames)",
    "Wan-AI/Wan2.2-I2V-A14B-Diffusers": "guided (Wan 2.2 I2V A14B, two experts, 81 frames)",
    "Wan-AI/Wan2.2-TI2V-5B-Diffusers": "guided (Wan 2.2 TI2V 5B, 1280x704, 121 frames)",
    "Ruihang/Wan-Move-14B-480P": "guided with tracks (Wan-Move over Wan 2.1 I2V 14B 480P)",
}
SETUP_HINT = (
    "create the generator environment (Preferences > Add-ons > Animate Anything > "
    "Create Generator Environment), or: python -m venv gen && "
    "gen/bin/pip install -r backend/requirements-generator.txt (in the extension folder)"
)


def package_report() -> list[dict]:
    rows = []
    for module, dists, purpose, needed_by in PACKAGES:
        version = None
        for dist in dists:
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        rows.append(
            {
                "module": module,
                "package": dists[0],
                "version": version,
                "installed": found,
                "purpose": purpose,
            }
            | {"needed_by": needed_by}
        )
    return rows


def torch_report() -> dict:
    """torch's version and devices; {"installed": False} without torch, {"error": ...} if it fails."""
    try:
        if importlib.util.find_spec("torch") is None:
            return {"installed": False, "devices": [_cpu()]}
    except (ImportError, ValueError):
        return {"installed": False, "devices": [_cpu()]}
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install is what the doctor reports
        failed = f"import torch failed: {type(exc).__name__}: {exc}"
        return {"installed": True, "error": failed, "devices": [_cpu()]}
    info: dict = {
        "installed": True,
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "devices": [],
    }
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(i)
                props = torch.cuda.get_device_properties(i)
                info["devices"].append(
                    {
                        "device": f"cuda:{i}",
                        "name": props.name,
                        "total_gib": round(total / 2**30, 1),
                        "free_gib": round(free / 2**30, 1),
                        "bf16": bool(torch.cuda.is_bf16_supported()),
                    }
                )
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            info["devices"].append({"device": "mps", "name": "Apple GPU (Metal)"})
    except Exception as exc:  # noqa: BLE001
        info["error"] = f"querying devices failed: {type(exc).__name__}: {exc}"
    info["devices"].append(_cpu())
    return info


def _cpu() -> dict:
    return {"device": "cpu", "name": platform.processor() or platform.machine(), "threads": os.cpu_count()}


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def diffusers_problems(folder: Path) -> list[str]:
    """What a CogVideoX folder in diffusers layout lacks for mode guided, one line each: the check
    the mode runs before loading (pipeline and text components; files only, no torch)."""
    return missing_parts(Path(folder), PIPELINE_COMPONENTS + TEXT_COMPONENTS)


def find_models(extra_dirs=()) -> list[dict]:
    """Models in the HF cache (video models by name), and in `extra_dirs` and one level below them
    AnimateAnything checkpoints (their index file) and diffusers folders (model_index.json).

    A model is "complete" only when the real check passes (`diffusers_problems`, or
    `plan_checkpoint` for AnimateAnything folders); "missing" lists what it lacks."""
    found = []
    cache = hf_cache_dir()
    if cache.is_dir():
        for d in sorted(cache.glob("models--*")):
            repo = d.name[len("models--") :].replace("--", "/")
            low = repo.lower()
            picked = _picked_model_use(low)
            if picked:
                found.append(_picked_cache_entry(repo, d, picked))
                continue
            if not any(k in low for k in ("cogvideo", "animateanything", "animate-anything")):
                continue
            snaps = sorted((d / "snapshots").glob("*/model_index.json")) if (d / "snapshots").is_dir() else []
            # the most complete snapshot counts (a cache may hold an old, partial one too)
            checks = [diffusers_problems(s.parent) for s in snaps]
            missing = min(checks, key=len) if checks else ["model_index.json (no snapshot has one)"]
            found.append(
                {
                    "name": repo,
                    "where": str(d),
                    "complete": not missing,
                    "missing": missing,
                    "use": KNOWN_MODELS.get(repo, "video model"),
                    "source": "huggingface cache",
                }
            )
    for root in extra_dirs:
        root = Path(root).expanduser()
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        for d in candidates:
            if (d / INDEX_FILE).is_file():
                use, missing = "animateanything", plan_checkpoint(d).missing
            elif (d / "model_index.json").is_file():
                use, missing = "diffusers folder", diffusers_problems(d)
            elif model_type(d) in SEGMENT_TYPES:
                use, missing = PICKED_USES["segment"], folder_problems(d, SEGMENT_TYPES)
            elif model_type(d) in DEPTH_TYPES:
                use, missing = PICKED_USES["depth"], folder_problems(d, DEPTH_TYPES)
            else:
                continue
            found.append(
                {
                    "name": d.name,
                    "where": str(d),
                    "complete": not missing,
                    "missing": missing,
                    "use": use,
                    "source": "folder",
                }
            )
    return found


# The optional models of a picked image (backend/segment): what `use` says in find_models.
PICKED_USES = {
    "segment": "picked images: the region under a drag (SAM 2)",
    "depth": "picked images: depth (Depth Anything V2)",
}


def _picked_model_use(repo_lower: str) -> str | None:
    if "sam2" in repo_lower:
        return "segment"
    if "depth-anything" in repo_lower or "depth_anything" in repo_lower:
        return "depth"
    return None


def _picked_cache_entry(repo: str, d: Path, kind: str) -> dict:
    types = SEGMENT_TYPES if kind == "segment" else DEPTH_TYPES
    snaps = (
        sorted(p.parent for p in (d / "snapshots").glob("*/config.json"))
        if (d / "snapshots").is_dir()
        else []
    )
    checks = [folder_problems(s, types) for s in snaps]
    missing = min(checks, key=len) if checks else ["config.json (no snapshot has one)"]
    return {
        "name": repo,
        "where": str(d),
        "complete": not missing,
        "missing": missing,
        "use": PICKED_USES[kind],
        "source": "huggingface cache",
    }


def picked_image_report(models: list[dict]) -> dict:
    """Whether the optional models of a picked image can run here: {"segment": {...}, "depth":
    {...}}, each {"usable" (transformers imports, has the class, and a complete folder was found),
    "transformers", "class", "class_available", "folders" (complete ones), "notes"}. Without them a
    picked image still works: regions from colours and edges, and a flat plane for depth."""
    try:
        found = importlib.util.find_spec("transformers") is not None
    except (ImportError, ValueError):
        found = False
    version = None
    if found:
        try:
            version = metadata.version("transformers")
        except metadata.PackageNotFoundError:
            version = "installed"
    out = {}
    for kind, types, example, fallback in (
        (
            "segment",
            SEGMENT_TYPES,
            SEGMENT_EXAMPLE,
            "regions from colours and edges (OpenCV GrabCut, or numpy)",
        ),
        ("depth", DEPTH_TYPES, DEPTH_EXAMPLE, "the picked image is a flat plane at the fallback depth"),
    ):
        cls = next(iter(types.values()))
        available = False
        if found:
            try:
                import transformers

                available = hasattr(transformers, cls)
            except Exception:  # noqa: BLE001 - a broken install is what the doctor reports
                available = False
        folders = [m["where"] for m in models if m.get("use") == PICKED_USES[kind] and m.get("complete")]
        notes = []
        if not found:
            notes.append("transformers is not installed in this Python")
        elif not available:
            notes.append(f"this transformers ({version}) has no {cls}: install transformers >= 4.56")
        if not folders:
            notes.append(
                f"no complete folder found (set it in the preferences; e.g. a download of {example}, "
                "config.json + model.safetensors + preprocessor_config.json)"
            )
        usable = found and available and bool(folders)
        if not usable:
            notes.append(f"without it: {fallback}")
        out[kind] = {
            "usable": usable,
            "transformers": version,
            "class": cls,
            "class_available": available,
            "folders": folders,
            "notes": notes,
        }
    return out


def _kernels_note(have_numba: bool) -> str:
    """How the preview's per-pixel work runs here. With numba its kernels (projection,
    splatting, filling, the output files') are built now, or loaded from numba's cache: the
    doctor runs once a generator environment is made, so the first Generate does not wait for
    the compiles (a few seconds each)."""
    if not have_numba:
        return "no numba: the splatting runs on numpy (about 2x slower; pip install numba)"
    from .modes.preview import flow_kernels
    from .outputs import _output_kernel
    from .preview.pushpull import compiled_kernel as fill_kernel
    from .preview.splat import compiled_kernel as splat_kernel

    kernels = {
        "projection": flow_kernels,
        "splatting": splat_kernel,
        "filling": fill_kernel,
        "output": _output_kernel,
    }
    broken = [name for name, load in kernels.items() if load() is None]
    if broken:
        return f"numba is installed but the {', '.join(broken)} kernel(s) did not build: numpy runs them"
    return "the splatting is compiled (numba): ready"


def collect(model_dirs=()) -> dict:
    packages = package_report()
    have = {p["module"]: p["installed"] for p in packages}
    torch_info = torch_report()
    models = find_models(model_dirs)
    gpu = [d for d in torch_info.get("devices", []) if d["device"] != "cpu"]
    preview_ok = have["numpy"] and have["PIL"]
    neural = all(have[m] for m in ("torch", "diffusers", "transformers", "safetensors"))
    video_models = [m for m in models if m["complete"] and "cogvideo" in m["name"].lower()]
    aa_models = [m for m in models if m["use"] == "animateanything"]
    aa_problems = [f"missing: {line}" for line in aa_models[0]["missing"]] if aa_models else []
    modes = {
        "preview": {
            "ready": preview_ok,
            "notes": [
                *([] if have["cv2"] else ["no OpenCV: reference videos are refused"]),
                *([] if have["av"] else ["no PyAV: the output is PNG frames, no mp4"]),
                _kernels_note(have["numba"] and preview_ok),
            ],
        },
        "guided": {
            "ready": preview_ok and neural and bool(video_models),
            "notes": [
                *([] if neural else [f"needs torch, diffusers, transformers and safetensors: {SETUP_HINT}"]),
                *([] if gpu else ["no GPU found: CogVideoX on a CPU takes hours"]),
                *(
                    []
                    if video_models
                    else [
                        "no CogVideoX image-to-video model found: set its folder in the preferences, "
                        "or allow downloads (about 20 GB for THUDM/CogVideoX-5b-I2V)"
                    ]
                ),
            ],
        },
        "animateanything": {
            "ready": preview_ok and neural and bool(aa_models) and not aa_problems,
            "notes": [
                *([] if neural else [f"needs torch, diffusers, transformers and safetensors: {SETUP_HINT}"]),
                *(
                    [f"checkpoint: {aa_models[0]['where']}", *aa_problems]
                    if aa_models
                    else [
                        "needs trained AnimateAnything weights (none are published): "
                        "pass their folder with --models, or set it in the preferences"
                    ]
                ),
            ],
        },
    }
    if neural:
        modes["guided"]["memory"] = memory_report()
    from .parallel_run import doctor_line

    modes["guided"]["notes"].append(doctor_line(sum(d["device"].startswith("cuda") for d in gpu)))
    return {
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "packages": packages,
        "torch": torch_info,
        "models": models,
        "hf_cache": str(hf_cache_dir()),
        "modes": modes,
        "picked_images": picked_image_report(models),
    }


def memory_report() -> dict:
    """What `python -m backend doctor` shows for mode guided: packages, the accelerator, its free
    memory and the plan that a 720x480x49 CogVideoX-5b-I2V job would get. Never raises."""
    report: dict = {"mode": "guided", "ok": False}
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda_available"] = torch.cuda.is_available()
        report["cuda_version"] = torch.version.cuda
    except Exception as exc:  # noqa: BLE001 - the doctor reports, never fails
        report["problems"] = [f"torch is not importable: {exc}"]
        return report
    problems, notes = [], []
    for name in ("diffusers", "transformers", "accelerate", "safetensors", "sentencepiece", "protobuf"):
        try:
            report[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[name] = None
            if name in ("sentencepiece", "protobuf"):
                notes.append(
                    f"{name} is not installed: needed to encode a new prompt with a checkpoint whose "
                    "tokenizer is only spiece.model (the THUDM ones); pip install sentencepiece protobuf"
                )
            else:
                problems.append(f"{name} is not installed")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report["device"] = device
    bf16 = False
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        report["gpu"] = props.name
        report["gpu_total_gib"] = round(props.total_memory / GiB, 2)
        bf16 = bool(torch.cuda.is_bf16_supported())
        report["bf16_supported"] = bf16
    else:
        notes.append("no CUDA GPU: mode guided would run on the CPU (hours per video at 720x480)")
    free = free_memory(device)
    report["free_gib"] = None if free is None else round(free / GiB, 2)
    plan = plan_memory(free, ModelSpec(), device=device, bf16_supported=bf16)
    report["plan_720x480x49"] = plan.as_dict()
    report["plan_summary"] = plan.summary()
    report["plans_by_family"] = family_plans(free, device, bf16, torch)
    report["offload_options"] = list(OFFLOADS)
    report["problems"] = problems
    report["notes"] = notes + plan.reasons
    report["ok"] = not problems
    return report


def family_plans(free, device: str, bf16: bool, torch) -> dict:
    """{label: plan summary} for each model family at its trained size on this machine."""
    from .runtime.devices import host_free_memory
    from .runtime.wan_memory import WAN_DEFAULT_FORMAT, wan_model_spec

    cc = torch.cuda.get_device_capability() if device == "cuda" else None
    host = host_free_memory() if device == "cuda" else None
    plans = {
        "CogVideoX-5b-I2V 720x480x49": plan_memory(free, ModelSpec(), device=device, bf16_supported=bf16)
    }
    names = {
        "2.1-i2v": "Wan2.1-I2V-14B / Wan-Move",
        "2.2-i2v-a14b": "Wan2.2-I2V-A14B",
        "2.2-ti2v-5b": "Wan2.2-TI2V-5B",
    }
    for variant, (h, w, f) in WAN_DEFAULT_FORMAT.items():
        spec = wan_model_spec(variant, h, w, f)
        plan = plan_memory(
            free, spec, device=device, bf16_supported=bf16, compute_capability=cc, host_free_bytes=host
        )
        plans[f"{names[variant]} {w}x{h}x{f}"] = plan
    return {label: plan.summary() + ("" if plan.fits else " (does not fit)") for label, plan in plans.items()}


def format_text(report: dict) -> str:
    py = report["python"]
    lines = [f"Python {py['version']} at {py['executable']} ({py['platform']})", "", "Packages:"]
    for p in report["packages"]:
        state = f"{p['version'] or 'installed'}" if p["installed"] else "MISSING"
        lines.append(f"  {p['package']:<24} {state:<12} {p['purpose']} ({p['needed_by']})")
    t = report["torch"]
    lines += ["", "Devices:"]
    if not t.get("installed"):
        lines.append(
            f"  torch is not installed: only the preview runs here. For the other modes: {SETUP_HINT}"
        )
    elif t.get("error"):
        lines.append(f"  {t['error']}")
    for d in t.get("devices", []):
        mem = f", {d['free_gib']} of {d['total_gib']} GiB free" if "free_gib" in d else ""
        threads = f", {d['threads']} threads" if "threads" in d else ""
        lines.append(f"  {d['device']}: {d['name']}{mem}{threads}")
    lines += ["", f"Models (Hugging Face cache {report['hf_cache']}):"]
    if not report["models"]:
        lines.append("  none found")
    for m in report["models"]:
        state = "complete" if m["complete"] else "incomplete download"
        lines.append(f"  {m['name']}: {state}, for {m['use']} ({m['where']})")
        lines += [f"    - missing: {p}" for p in m.get("missing", [])]
    picked = report.get("picked_images", {})
    if picked:
        lines += ["", "Picked images (optional models):"]
        for kind, label in (("segment", "SAM 2 (regions)"), ("depth", "Depth Anything V2 (depth)")):
            entry = picked.get(kind, {})
            state = "usable: " + ", ".join(entry.get("folders", [])) if entry.get("usable") else "not used"
            lines.append(f"  {label}: {state}")
            lines += [f"    - {n}" for n in entry.get("notes", [])]
    lines += ["", "Modes:"]
    for name, mode in report["modes"].items():
        lines.append(f"  {name}: {'ready' if mode['ready'] else 'not ready'}")
        lines += [f"    - {n}" for n in mode["notes"]]
        memory = mode.get("memory", {})
        lines += [f"    - memory: {memory['plan_summary']}"] if memory.get("plan_summary") else []
        lines += [f"    - memory, {k}: {v}" for k, v in memory.get("plans_by_family", {}).items()]
        lines += [f"    - {p}" for p in memory.get("problems", [])]
    return "\n".join(lines)


def main(*, as_json: bool = False, model_dirs=()) -> int:
    report = collect(model_dirs)
    print(json.dumps(report, indent=2) if as_json else format_text(report))
    return 0 if report["modes"]["preview"]["ready"] else 1
