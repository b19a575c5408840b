"""What the generator's Python can run, in words a user can act on (stdlib only).

`DoctorCheck(python).start()` runs ``[python, "-m", "backend", "doctor", "--json", "--models", DIR...]``
(an argument list, never a shell) with the extension root as working folder and the environment of
a generation (`client.child_environment`), in its own process group; `poll()` never blocks and
ends the group after `timeout` seconds. `summarize(report, python, model_settings)` turns the
doctor's JSON report into a `CheckResult`: a headline, a level, and lines (missing packages, GPUs
or their absence, models found, what is wrong with the model locations set in the preferences).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from .client import EXTENSION_ROOT, HINT, child_environment, interpreter_problem
from .processes import new_process_group, stop_group

CHECK_TIMEOUT = 60.0  # seconds before a check that has not answered is stopped
DISPLAY_WIDTH = 88  # characters per line in the preferences panel

# Package names as users install them (pip), by the module the doctor reports.
INSTALL_NAMES = {"PIL": "pillow", "cv2": "opencv-python-headless", "av": "av"}


@dataclass
class CheckResult:
    """What a check found. level: 'INFO' (the preview at least can run) or 'ERROR'."""

    python: str
    level: str
    headline: str
    lines: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)  # the modes that can run
    finished_at: float = field(default_factory=time.time)
    display: list[str] = field(default_factory=list)  # `lines` wrapped for the preferences panel

    def __post_init__(self):
        if not self.display:
            for line in self.lines:
                self.display += textwrap.wrap(line, DISPLAY_WIDTH, subsequent_indent="    ") or [""]

    @property
    def ok(self) -> bool:
        return self.level != "ERROR"


# ----------------------------------------------------------------------------- the words
def _mode_name(mode: str) -> str:
    return {"animateanything": "AnimateAnything"}.get(mode, mode.capitalize())


def _install_name(package: dict) -> str:
    return INSTALL_NAMES.get(package.get("module"), package.get("package") or package.get("module", "?"))


def _needed_by_models(package: dict) -> bool:
    """A package the guided/animateanything modes need (not an optional one)."""
    needed_by = str(package.get("needed_by", ""))
    return "guided" in needed_by and "optional" not in needed_by


def summarize(report: dict, python: str, model_settings: dict | None = None) -> CheckResult:
    """Turn the doctor's JSON report into a CheckResult. `model_settings`: {label: path or hub id}
    from the preferences, to say when a folder set there does not exist or holds no model."""
    lines: list[str] = []
    py = report.get("python", {})
    lines.append(f"Python {py.get('version', '?')} at {py.get('executable', python)}")

    modes = report.get("modes", {})
    ready = [name for name, mode in modes.items() if mode.get("ready")]
    packages = report.get("packages", [])
    missing = [p for p in packages if not p.get("installed")]
    required = [p for p in missing if p.get("needed_by") == "all modes"]
    neural = [p for p in missing if p not in required and _needed_by_models(p)]
    optional = [p for p in missing if p not in required and p not in neural]

    def names(rows, sep=", "):
        return sep.join(_install_name(p) for p in rows)

    if required:
        lines.append(
            f"Missing, needed by every mode: {names(required)}. Install them into this Python "
            f"(pip install {names(required, ' ')}), "
            "or leave Generator Python empty to use Blender's own"
        )
    if neural:
        lines.append(
            f"Missing for the guided modes: {names(neural)} "
            "(pip install -r backend/requirements-generator.txt from the extension folder, in this "
            "Python's environment)"
        )
    if optional:
        lines.append(
            "Optional, not installed: "
            + "; ".join(f"{names([p])} ({p.get('purpose', '')})" for p in optional)
        )

    torch_info = report.get("torch", {})
    gpus = [d for d in torch_info.get("devices", []) if d.get("device") != "cpu"]
    if not torch_info.get("installed"):
        lines.append("torch is not installed: only the preview runs with this Python")
    elif torch_info.get("error"):
        lines.append(f"torch is installed but broken: {torch_info['error']}")
    elif not gpus:
        build = torch_info.get("cuda_build")
        why = (
            f"torch {torch_info.get('version', '')} was built for CUDA {build}"
            if build
            else (f"torch {torch_info.get('version', '')} is a CPU-only build")
        )
        lines.append(f"No CUDA device: {why}; the guided mode would take hours on the CPU")
    for d in gpus:
        memory = f": {d['free_gib']} of {d['total_gib']} GiB free" if "free_gib" in d else ""
        lines.append(f"GPU {d.get('device')}: {d.get('name', '?')}{memory}")

    models = report.get("models", [])
    for m in models:
        if m.get("complete"):
            state = "complete"
        else:  # a partial download in the cache, or a folder missing parts
            state = "incomplete download" if m.get("source") == "huggingface cache" else "incomplete folder"
            missing = [str(part) for part in m.get("missing", [])]
            if missing:
                state += " (missing " + "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else "") + ")"
        lines.append(f"Model {m.get('name')}: {state}, for {m.get('use', '?')} ({m.get('where', '')})")
    if not models:
        lines.append(f"No video model found (looked in {report.get('hf_cache', 'the Hugging Face cache')})")
    lines += _model_setting_lines(models, model_settings or {})
    picked = _picked_images_line(report.get("picked_images"))
    if picked:
        lines.append(picked)

    for name, mode in modes.items():
        if mode.get("ready") or name == "preview":
            continue  # the preview's notes are the optional packages above
        # Packages and GPUs are said above; the rest (models, weights) is what to do for this mode.
        notes = [n for n in mode.get("notes", []) if "requirements" not in n and "no GPU" not in n]
        lines.append(f"{_mode_name(name)}: not ready" + (": " + "; ".join(notes) if notes else ""))

    if "preview" in ready:
        headline = "Generator ready for: " + ", ".join(_mode_name(m) for m in ready)
        level = "INFO"
    else:
        headline = f"The generator cannot run with {python}"
        level = "ERROR"
    return CheckResult(python=python, level=level, headline=headline, lines=lines, ready=ready)


def _picked_images_line(picked: dict | None) -> str:
    """One line on the optional models of a picked image (SAM 2, Depth Anything V2), or ""."""
    if not picked:
        return ""
    seg, depth = picked.get("segment", {}), picked.get("depth", {})
    regions = "SAM 2" if seg.get("usable") else "colours and edges (no SAM 2)"
    planar = (
        "Depth Anything V2"
        if depth.get("usable")
        else "none, a flat plane (set a Depth Anything V2 folder: depth-anything/Depth-Anything-V2-Small-hf)"
    )
    return f"Picked images: regions by {regions}; depth: {planar}"


_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _model_setting_lines(models: list[dict], settings: dict) -> list[str]:
    """What is wrong with the model locations set in the preferences (folders or hub ids)."""
    lines = []
    found_where = [str(Path(m.get("where", "")).resolve()) for m in models]
    found_names = {str(m.get("name", "")).lower() for m in models if m.get("complete")}
    for label, value in settings.items():
        if not value:
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            root = str(path.resolve())
            if not any(w == root or w.startswith(root + os.sep) for w in found_where):
                lines.append(f"{label}: no model found in {path} or its subfolders")
        elif not path.is_absolute() and not value.startswith((".", "~")) and _HUB_ID.match(value):
            if value.lower() not in found_names:
                lines.append(
                    f"{label}: {value} is not in the Hugging Face cache: turn Allow Downloads on "
                    "(many GB) or download it first"
                )
        else:
            lines.append(f"{label}: the folder {value} does not exist")
    return lines


def failure(python: str, headline: str, *lines: str) -> CheckResult:
    return CheckResult(python=python, level="ERROR", headline=headline, lines=[ln for ln in lines if ln])


# ----------------------------------------------------------------------------- the process
def doctor_command(python: str, model_dirs=()) -> list[str]:
    command = [python, "-m", "backend", "doctor", "--json"]
    if model_dirs:
        command += ["--models", *model_dirs]
    return command


class DoctorCheck:
    """One run of the doctor, polled without blocking: `start()`, then `poll()` until it returns a
    CheckResult (also kept in `.result`). Output goes to temporary files, never to a pipe that
    could fill up. `timeout`: seconds before the process (its whole group) is killed."""

    def __init__(self, python: str, *, extra_paths=(), models: dict | None = None, timeout=CHECK_TIMEOUT):
        self.python = python
        self.extra_paths = list(extra_paths)
        self.models = dict(models or {})
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.result: CheckResult | None = None
        self.started_at = 0.0
        self._out = self._err = None

    def command(self) -> list[str]:
        dirs = [v for v in self.models.values() if Path(v).expanduser().is_dir()]
        return doctor_command(self.python, dirs)

    def start(self) -> DoctorCheck:
        problem = interpreter_problem(self.python)
        if problem:
            self.result = failure(self.python, problem["message"], problem["hint"])
            return self
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _finish)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.started_at = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(EXTENSION_ROOT),
                env=child_environment(EXTENSION_ROOT, self.extra_paths),
                stdin=subprocess.DEVNULL,
                stdout=self._out,
                stderr=self._err,
                **new_process_group(),
            )
        except OSError as exc:
            self._close()
            message = f"cannot start the generator's Python {self.python}: {exc}"
            self.result = failure(self.python, message, HINT)
        return self

    def poll(self) -> CheckResult | None:
        """None while the doctor runs; then the result (the same object on later calls)."""
        if self.result is not None:
            return self.result
        if self.proc.poll() is None:
            if time.monotonic() - self.started_at < self.timeout:
                return None
            self._kill()
            self.result = failure(
                self.python,
                f"the check did not answer within {self.timeout:g} s and was stopped",
                f"Try it in a terminal: {' '.join(self.command())} (from the extension folder)",
            )
            self._close()
            return self.result
        self.result = self._read()
        self._close()
        return self.result

    def wait(self) -> CheckResult:
        while self.poll() is None:
            time.sleep(0.05)
        return self.result

    def cancel(self) -> None:
        if self.result is None and self.proc is not None:
            self._kill()
            self.result = failure(self.python, "the check was cancelled")
            self._close()

    def _read(self) -> CheckResult:
        self._out.seek(0)
        self._err.seek(0)
        out = self._out.read().decode("utf-8", "replace")
        err = self._err.read().decode("utf-8", "replace").strip()
        try:
            report = json.loads(out)
            if not isinstance(report, dict):
                raise ValueError("not an object")
        except ValueError:
            tail = (err or out).strip().splitlines()[-3:]
            why = " | ".join(tail) or f"exit code {self.proc.returncode}, no output"
            if "No module named backend" in err or "No module named 'backend'" in err:
                hint = "The extension folder is incomplete: reinstall Animate Anything"
            else:
                hint = "This Python may be too old (3.10+ is needed) or broken. " + HINT
            message = f"the generator's Python {self.python} could not run the check"
            return failure(self.python, message, why, hint)
        return summarize(report, self.python, self.models)

    def _kill(self) -> None:
        stop_group(self.proc, grace=0)

    def _close(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None:
                fh.close()
        self._out = self._err = None
