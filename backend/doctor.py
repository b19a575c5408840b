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

# stdlib only (no torch): the doctor checks AnimateAnything folders from their files
from .animateanything.checkpoint import INDEX_FILE, plan_checkpoint

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


def _checkpoint_problems(folder: str) -> list[str]:
    """What an AnimateAnything checkpoint folder lacks, one line each (files only, no torch)."""
    return [f"missing: {line}" for line in plan_checkpoint(folder).missing]


def find_models(extra_dirs=()) -> list[dict]:
    """Models in the HF cache (video models by name), and in `extra_dirs` and one level below them
    AnimateAnything checkpoints (their index file) and diffusers folders (model_index.json)."""
    found = []
    cache = hf_cache_dir()
    if cache.is_dir():
        for d in sorted(cache.glob("models--*")):
            repo = d.name[len("models--") :].replace("--", "/")
            low = repo.lower()
            if not any(k in low for k in ("cogvideo", "animateanything", "animate-anything")):
                continue
            snaps = sorted((d / "snapshots").glob("*/model_index.json")) if (d / "snapshots").is_dir() else []
            found.append(
                {
                    "name": repo,
                    "where": str(d),
                    "complete": bool(snaps),
                    "use": KNOWN_MODELS.get(repo, "video model"),
                    "source": "huggingface cache",
                }
            )
    for root in extra_dirs:
        root = Path(root).expanduser()
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
        for d in candidates:
            use = (
                "animateanything"
                if (d / INDEX_FILE).is_file()
                else "diffusers folder"
                if (d / "model_index.json").is_file()
                else None
            )
            if use:
                found.append(
                    {"name": d.name, "where": str(d), "complete": True, "use": use, "source": "folder"}
                )
    return found


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
    aa_problems = _checkpoint_problems(aa_models[0]["where"]) if aa_models else []
    modes = {
        "preview": {
            "ready": preview_ok,
            "notes": [
                *([] if have["cv2"] else ["no OpenCV: reference videos are refused"]),
                *([] if have["av"] else ["no PyAV: the output is PNG frames, no mp4"]),
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
        from .guided.memory import doctor_report

        modes["guided"]["memory"] = doctor_report()
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
    }


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
    lines += ["", "Modes:"]
    for name, mode in report["modes"].items():
        lines.append(f"  {name}: {'ready' if mode['ready'] else 'not ready'}")
        lines += [f"    - {n}" for n in mode["notes"]]
        memory = mode.get("memory", {})
        lines += [f"    - memory: {memory['plan_summary']}"] if memory.get("plan_summary") else []
        lines += [f"    - {p}" for p in memory.get("problems", [])]
    return "\n".join(lines)


def main(*, as_json: bool = False, model_dirs=()) -> int:
    report = collect(model_dirs)
    print(json.dumps(report, indent=2) if as_json else format_text(report))
    return 0 if report["modes"]["preview"]["ready"] else 1
