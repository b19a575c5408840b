"""Check Generator: what the generator's Python can run, in words the user can act on.

`animate_anything.check_generator` (the Check button in the add-on preferences) runs
``[python, "-m", "backend", "doctor", "--json", "--models", DIR...]`` with the interpreter the
generator would use (`generate.generator_python`: the preferences' Generator Python, else Blender's
own) and the same environment as a generation (`client.child_environment`: the extension root, then
the bundled wheels for Blender's own Python, on PYTHONPATH; the extension root as working folder).
The model folders set in the preferences are passed with ``--models``.

The doctor is a short command (a few seconds; importing torch is most of it). With a UI the operator
is modal: it polls the process on a window-manager timer, so the interface never waits, and kills
it after `CHECK_TIMEOUT` seconds. In background mode (``blender -b``, the bpy module) it waits, with
the same limit. The result (`CheckResult`: a headline, a level, and lines: missing packages, GPUs
or their absence, models found) is reported with self.report and kept in this module
(`last_result()`) for the preferences panel to draw; it is not saved anywhere.
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

import bpy

from ..blender_animate.client import (
    EXTENSION_ROOT,
    HINT,
    child_environment,
    interpreter_problem,
    new_process_group,
    signal_group,
)
from . import export_job, generate

CHECK_TIMEOUT = 60.0  # seconds before a check that has not answered is stopped
POLL_INTERVAL = 0.2
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


_last: CheckResult | None = None
_running: DoctorCheck | None = None


def last_result() -> CheckResult | None:
    """The result of the last check in this Blender session (None before the first)."""
    return _last


def is_checking() -> bool:
    return _running is not None and _running.result is None


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
        state = "complete" if m.get("complete") else "incomplete download"
        lines.append(f"Model {m.get('name')}: {state}, for {m.get('use', '?')} ({m.get('where', '')})")
    if not models:
        lines.append(f"No video model found (looked in {report.get('hf_cache', 'the Hugging Face cache')})")
    lines += _model_setting_lines(models, model_settings or {})

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


def model_settings(context=None) -> dict:
    """{label: value} of the model locations set in the preferences (paths made absolute)."""
    prefs = export_job.preferences(context)
    out = {}
    fields = (("cogvideox_model", "CogVideoX Model"), ("animateanything_model", "AnimateAnything Weights"))
    for attr, label in fields:
        value = getattr(prefs, attr, "").strip()
        if value:
            out[label] = bpy.path.abspath(value) if value.startswith("//") else value
    return out


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
        signal_group(self.proc)
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass

    def _close(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None:
                fh.close()
        self._out = self._err = None


def start_check(context=None) -> DoctorCheck:
    """Start a check with the interpreter and paths a generation would use. When it ends at once (a
    missing interpreter), its result is already stored."""
    global _running
    python = generate.generator_python(context)
    check = DoctorCheck(python, extra_paths=generate.generator_paths(python), models=model_settings(context))
    _running = check.start()
    if check.result is not None:
        _store(check, check.result)
    return check


def poll_check(check: DoctorCheck) -> CheckResult | None:
    """Poll a started check; when it has ended, store its result (what the preferences draw) and
    return it. None while it runs."""
    result = check.poll()
    if result is not None:
        _store(check, result)
    return result


def run_synchronously(context) -> bool:
    """Wait for the check in place: background mode (no event loop) or no window to poll from."""
    return bpy.app.background or context.window is None


def _store(check: DoctorCheck, result: CheckResult) -> None:
    global _last, _running
    if _running is check:
        _running = None
    if _last is None or _last.finished_at <= result.finished_at:
        _last = result
    generate.redraw_areas({"PREFERENCES"})


# ----------------------------------------------------------------------------- the operator
class ANIMATE_ANYTHING_OT_check_generator(generate.ModalTimer, bpy.types.Operator):
    """Check what the generator's Python can run: missing packages, GPUs, models found"""

    bl_idname = "animate_anything.check_generator"
    bl_label = "Check Generator"
    bl_options = {"INTERNAL"}

    _check = None

    @classmethod
    def poll(cls, context):
        if is_checking():
            cls.poll_message_set("a check is running")
            return False
        return True

    def execute(self, context):
        check = start_check(context)
        if check.result is not None:
            return self._report(check.result)
        if run_synchronously(context):
            while (result := poll_check(check)) is None:
                time.sleep(0.05)
            return self._report(result)
        self._check = check
        self.start_modal(context, POLL_INTERVAL)
        generate.redraw_areas({"PREFERENCES"})
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._check.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        result = poll_check(self._check)
        if result is None:
            return {"PASS_THROUGH"}
        self.remove_timer(context)
        return self._report(result)

    def cancel(self, context):  # Blender ends the modal handler (file load, quit)
        if self._check is not None and self._check.result is None:
            self._check.cancel()
            _store(self._check, self._check.result)
        self.remove_timer(context)

    def _report(self, result: CheckResult):
        if result.lines:
            self.report({"INFO"}, "\n".join(result.lines))
        self.report({result.level}, result.headline)
        return {"FINISHED"} if result.ok else {"CANCELLED"}


def unregister():
    global _running
    if _running is not None:
        _running.cancel()
        _running = None


classes = (ANIMATE_ANYTHING_OT_check_generator,)
