"""`animate_anything.check_generator` (the Check button in the add-on preferences): what the
generator's Python can run, in words the user can act on.

Runs ``python -m backend doctor --json`` (blender_animate.addon.doctor_check) with the interpreter
and environment a generation would use. With a UI the operator is modal: it polls the process on a
window-manager timer, so the interface never waits, and the check is stopped after
`CHECK_TIMEOUT` seconds. In background mode it waits, with the same limit. The result is reported
and kept (operators/adapter/checks.py) for the preferences to draw.
"""

from __future__ import annotations

import time

import bpy

from ..blender_animate.addon.doctor_check import CheckResult
from .adapter import checks
from .adapter.ui import ModalTimer, redraw_areas

POLL_INTERVAL = 0.2


class ANIMATE_ANYTHING_OT_check_generator(ModalTimer, bpy.types.Operator):
    """Check what the generator's Python can run: missing packages, GPUs, models found"""

    bl_idname = "animate_anything.check_generator"
    bl_label = "Check Generator"
    bl_options = {"INTERNAL"}

    _check = None

    @classmethod
    def poll(cls, context):
        if checks.is_checking():
            cls.poll_message_set("a check is running")
            return False
        return True

    def execute(self, context):
        check = checks.start_check(context)
        if check.result is not None:
            return self._report(check.result)
        if checks.run_synchronously(context):
            while (result := checks.poll_check(check)) is None:
                time.sleep(0.05)
            return self._report(result)
        self._check = check
        self.start_modal(context, POLL_INTERVAL)
        redraw_areas({"PREFERENCES"})
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._check.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        result = checks.poll_check(self._check)
        if result is None:
            return {"PASS_THROUGH"}
        self.remove_timer(context)
        return self._report(result)

    def cancel(self, context):  # Blender ends the modal handler (file load, quit)
        if self._check is not None and self._check.result is None:
            self._check.cancel()
            checks.store(self._check, self._check.result)
        self.remove_timer(context)

    def _report(self, result: CheckResult):
        if result.lines:
            self.report({"INFO"}, "\n".join(result.lines))
        self.report({result.level}, result.headline)
        return {"FINISHED"} if result.ok else {"CANCELLED"}


classes = (ANIMATE_ANYTHING_OT_check_generator,)
