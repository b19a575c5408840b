"""The generator-environment build this Blender follows (blender_animate.addon.environment does the
work): where it goes, the timer that shows its progress, and setting Generator Python at the end."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import bpy

from ...blender_animate.addon.environment import (
    ENV_FOLDER,
    EnvironmentBuild,
    environment_commands,
    venv_python,
)
from .preferences import ADDON_PACKAGE, get_preferences
from .ui import status_text

POLL_INTERVAL = 0.25

_active: EnvironmentBuild | None = None


def active_build() -> EnvironmentBuild | None:
    return _active


def is_building() -> bool:
    return _active is not None and not _active.finished


def default_environment_dir() -> Path:
    """generator-env in the extension's user folder (kept across extension updates)."""
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=True)) / ENV_FOLDER


def start_build(venv_dir: Path, requirements: Path) -> EnvironmentBuild:
    """Start creating the venv with Blender's own Python (log: DIR.log); with a UI a timer follows
    it, in background mode this waits. Generator Python is set when it succeeds."""
    global _active
    # A clean environment: Blender's own PYTHON* variables must not leak into the venv.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    commands = environment_commands(sys.executable, venv_dir, requirements)
    build = EnvironmentBuild(commands, venv_dir.with_name(venv_dir.name + ".log"), env=env).start()
    _active = build
    python_path = venv_python(venv_dir)
    if bpy.app.background:
        build.wait()
        _finish(build, python_path)
        return build
    wm = bpy.context.window_manager
    if hasattr(wm, "progress_begin"):
        wm.progress_begin(0, 100)
    bpy.app.timers.register(_timer(build, python_path), first_interval=POLL_INTERVAL)
    return build


def _finish(build: EnvironmentBuild, python_path: Path) -> None:
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
        _finish(build, python_path)
        return None

    return tick


def unregister():
    """Disabling the add-on stops a build in progress (its whole process group)."""
    global _active
    if _active is not None and not _active.finished:
        _active.cancel()
    _active = None
