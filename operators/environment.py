"""Preferences button: create the generator's Python environment (a venv with torch and diffusers).

`animate_anything.create_environment` runs, one after the other and never through a shell:

    [python, -m, venv, DIR]
    [DIR/bin/python, -m, pip, install, --disable-pip-version-check, -r, backend/requirements-generator.txt]

(`DIR/Scripts/python.exe` on Windows, where PyPI's torch has no CUDA, so PyTorch's CUDA index is
added). `python` is the interpreter Blender runs; DIR defaults to `generator-env` in the
extension's user folder (kept across extension updates). The processes run in the background:
a `bpy.app.timers` function polls them and shows the step and the last line of pip's output in the
status bar and a progress cursor; everything is written to `DIR.log`. On success the preferences'
Generator Python is set to the new interpreter. Needs Blender's online access (Preferences >
System > Network). In background mode (`blender -b`) it runs synchronously.

`EnvironmentBuild` and the command builders are bpy-free so they can be tested without Blender.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

try:
    import bpy
except ImportError:  # the bpy-free parts are tested without Blender
    bpy = None

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "backend" / "requirements-generator.txt"
ENV_FOLDER = "generator-env"
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu126"
POLL_INTERVAL = 0.25


def venv_python(venv_dir: str | os.PathLike, platform: str = sys.platform) -> Path:
    """The interpreter inside a venv."""
    if platform == "win32":
        return Path(venv_dir) / "Scripts" / "python.exe"
    return Path(venv_dir) / "bin" / "python"


def environment_commands(
    base_python: str,
    venv_dir: str | os.PathLike,
    requirements: str | os.PathLike,
    platform: str = sys.platform,
) -> list[list[str]]:
    """The argument lists that create the venv and install the requirements into it."""
    pip = [str(venv_python(venv_dir, platform)), "-m", "pip", "install", "--disable-pip-version-check"]
    if platform == "win32":  # PyPI's Windows torch wheels are CPU-only
        pip += ["--extra-index-url", TORCH_CUDA_INDEX]
    return [[str(base_python), "-m", "venv", str(venv_dir)], pip + ["-r", str(requirements)]]


def offline_problem(online_access: bool) -> str | None:
    """Why the environment cannot be created now, or None."""
    if not online_access:
        return (
            "Creating the generator environment downloads packages (several GB), and Blender's online access "
            "is off: allow it in Preferences > System > Network, or run Blender with --online-mode"
        )
    return None


class EnvironmentBuild:
    """Runs `commands` one after another in the background, all output appended to `log_path`.

    `poll()` advances without blocking and returns True once finished; `state` is "running",
    "done", "failed" or "cancelled"; `step` (0-based) and `total` say how far it got; `last_line`
    is the latest line of output (for the UI); `message` explains a failure."""

    def __init__(self, commands: list[list[str]], log_path: str | os.PathLike, env: dict | None = None):
        if not commands or not all(isinstance(c, list) and c for c in commands):
            raise ValueError("commands must be a non-empty list of argument lists")
        self.commands = commands
        self.log_path = Path(log_path)
        self.env = env
        self.step = 0
        self.total = len(commands)
        self.state = "running"
        self.message = ""
        self.last_line = ""
        self.started_at = time.monotonic()
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._read_pos = 0

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def progress(self) -> float:
        """0..1: finished steps plus half a step for the one running."""
        if self.state == "done":
            return 1.0
        return min(1.0, (self.step + (0.5 if self._proc is not None else 0.0)) / self.total)

    def start(self) -> EnvironmentBuild:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _finish
        self._launch()
        return self

    def _launch(self) -> None:
        argv = self.commands[self.step]
        self._log.write(f"\n$ {subprocess.list2cmdline(argv)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        except OSError as exc:
            self._finish("failed", f"could not start {argv[0]}: {exc}")

    def poll(self) -> bool:
        if self.finished:
            return True
        self._read_last_line()
        code = self._proc.poll() if self._proc is not None else None
        if code is None:
            return False
        self._proc = None
        if code != 0:
            self._finish(
                "failed",
                f"step {self.step + 1} of {self.total} ({' '.join(self.commands[self.step][1:4])}) "
                f"exited with code {code}; see {self.log_path}",
            )
            return True
        self.step += 1
        if self.step == self.total:
            self._finish("done", "")
            return True
        self._launch()
        return self.finished

    def wait(self, timeout: float | None = None) -> str:
        """Block until finished (background mode, tests); returns the state."""
        end = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if end is not None and time.monotonic() > end:
                self.cancel()
                break
            time.sleep(0.05)
        return self.state

    def cancel(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if not self.finished:
            self._finish("cancelled", "cancelled")

    def _finish(self, state: str, message: str) -> None:
        self.state = state
        self.message = message
        if self._log is not None:
            self._log.write(f"\n# {state}{': ' + message if message else ''}\n".encode())
            self._log.close()
            self._log = None
        self._read_last_line()

    def _read_last_line(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._read_pos)
                chunk = f.read()
        except OSError:
            return
        self._read_pos += len(chunk)
        lines = [line.strip() for line in chunk.decode("utf-8", "replace").splitlines() if line.strip()]
        if lines:
            self.last_line = lines[-1][:200]


# ----------------------------------------------------------------------------- Blender side
_active: EnvironmentBuild | None = None


def active_build() -> EnvironmentBuild | None:
    return _active


if bpy is not None:
    from bpy.props import StringProperty

    # Relative imports only here: without bpy this file is loaded on its own, outside its package.
    from ..panels.preferences import ADDON_PACKAGE, get_preferences
    from .generate import status_text

    def default_environment_dir() -> Path:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=True)) / ENV_FOLDER

    def _finish_in_blender(build: EnvironmentBuild, python_path: Path) -> None:
        wm = bpy.context.window_manager
        if hasattr(wm, "progress_end"):
            wm.progress_end()
        status_text(None)
        if build.state == "done":
            prefs = get_preferences(bpy.context)
            if prefs is not None:
                prefs.python_path = str(python_path)

    def _timer(build: EnvironmentBuild, python_path: Path):
        def tick():
            try:
                finished = build.poll()
            except Exception as exc:  # noqa: BLE001 - a timer must never raise
                build.cancel()
                build.message = f"internal error: {exc}"
                finished = True
            wm = bpy.context.window_manager
            if not finished:
                if hasattr(wm, "progress_update"):
                    wm.progress_update(int(100 * build.progress))
                status_text(
                    f"Animate Anything environment, step {build.step + 1}/{build.total}: {build.last_line}"
                )
                return POLL_INTERVAL
            _finish_in_blender(build, python_path)
            return None

        return tick

    class ANIMATE_ANYTHING_OT_create_environment(bpy.types.Operator):
        """Create a Python environment with torch and diffusers for the guided modes (downloads several GB)"""

        bl_idname = "animate_anything.create_environment"
        bl_label = "Create Generator Environment"
        bl_options = {"REGISTER", "INTERNAL"}

        directory: StringProperty(
            name="Folder",
            subtype="DIR_PATH",
            default="",
            description="Where the environment goes (empty: generator-env in the extension's user folder)",
            options={"SKIP_SAVE"},
        )
        requirements: StringProperty(
            name="Requirements",
            default="",
            description="Requirements file (empty: the generator's own)",
            options={"SKIP_SAVE", "HIDDEN"},
        )

        @classmethod
        def poll(cls, context):
            if _active is not None and not _active.finished:
                cls.poll_message_set("The environment is being created (see the status bar)")
                return False
            return True

        def execute(self, context):
            global _active
            problem = offline_problem(bool(bpy.app.online_access))
            if problem:
                self.report({"ERROR"}, problem)
                return {"CANCELLED"}
            venv_dir = Path(bpy.path.abspath(self.directory)) if self.directory else default_environment_dir()
            requirements = Path(self.requirements) if self.requirements else REQUIREMENTS
            if not requirements.is_file():
                self.report(
                    {"ERROR"}, f"The requirements file {requirements} is missing: reinstall the extension"
                )
                return {"CANCELLED"}
            # A clean environment: Blender's own PYTHON* variables must not leak into the venv.
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
            commands = environment_commands(sys.executable, venv_dir, requirements)
            build = EnvironmentBuild(commands, venv_dir.with_name(venv_dir.name + ".log"), env=env).start()
            _active = build
            python_path = venv_python(venv_dir)
            if bpy.app.background:
                build.wait()
                _finish_in_blender(build, python_path)
                return self._report_end(build, python_path)
            wm = context.window_manager
            if hasattr(wm, "progress_begin"):
                wm.progress_begin(0, 100)
            bpy.app.timers.register(_timer(build, python_path), first_interval=POLL_INTERVAL)
            self.report({"INFO"}, f"Creating the generator environment in {venv_dir} (log: {build.log_path})")
            return {"FINISHED"}

        def _report_end(self, build, python_path):
            if build.state == "done":
                self.report({"INFO"}, f"Generator environment ready: {python_path}")
                return {"FINISHED"}
            self.report({"ERROR"}, f"Creating the generator environment failed: {build.message}")
            return {"CANCELLED"}

    classes = (ANIMATE_ANYTHING_OT_create_environment,)
else:
    classes = ()
