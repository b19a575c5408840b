"""The Check Generator runs this Blender follows, and the last result (what the preferences draw).

`start_check(context)` starts a blender_animate.addon.doctor_check.DoctorCheck with the interpreter
and paths a generation would use and the model locations of the preferences; `poll_check` stores
its result when it ends. Results are kept in memory for this session, never saved.
"""

from __future__ import annotations

import bpy

from ...blender_animate.addon.doctor_check import CheckResult, DoctorCheck
from .preferences import generator_paths, generator_python, model_settings
from .ui import redraw_areas

_last: CheckResult | None = None
_running: DoctorCheck | None = None


def last_result() -> CheckResult | None:
    """The result of the last check in this Blender session (None before the first)."""
    return _last


def is_checking() -> bool:
    return _running is not None and _running.result is None


def start_check(context=None) -> DoctorCheck:
    """Start a check with the interpreter and paths a generation would use. When it ends at once (a
    missing interpreter), its result is already stored."""
    global _running
    python = generator_python(context)
    check = DoctorCheck(python, extra_paths=generator_paths(python), models=model_settings(context))
    _running = check.start()
    if check.result is not None:
        store(check, check.result)
    return check


def poll_check(check: DoctorCheck) -> CheckResult | None:
    """Poll a started check; when it has ended, store its result (what the preferences draw) and
    return it. None while it runs."""
    result = check.poll()
    if result is not None:
        store(check, result)
    return result


def run_synchronously(context) -> bool:
    """Wait for the check in place: background mode (no event loop) or no window to poll from."""
    return bpy.app.background or context.window is None


def store(check: DoctorCheck, result: CheckResult) -> None:
    global _last, _running
    if _running is check:
        _running = None
    if _last is None or _last.finished_at <= result.finished_at:
        _last = result
    redraw_areas({"PREFERENCES"})


def unregister():
    global _running
    if _running is not None:
        _running.cancel()
        _running = None
