"""Create the generator's Python environment: a venv with torch and diffusers (stdlib only).

`environment_commands` gives the argument lists (never a shell):

    [python, -m, venv, DIR]
    [DIR/bin/python, -m, pip, install, --disable-pip-version-check, -r, backend/requirements-generator.txt]

(`DIR/Scripts/python.exe` on Windows, where PyPI's torch has no CUDA, so PyTorch's CUDA index is
added). `EnvironmentBuild` runs them one after another in the background, each in its own process
group, so that cancelling also ends what pip started; all output goes to a log file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .client import EXTENSION_ROOT
from .processes import new_process_group, stop_group

REQUIREMENTS = EXTENSION_ROOT / "backend" / "requirements-generator.txt"
ENV_FOLDER = "generator-env"
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu126"


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
                **new_process_group(),
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
        if self._proc is not None:
            stop_group(self._proc, grace=5.0)  # the whole group: pip's children too
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
