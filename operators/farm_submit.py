"""`animate_anything.farm_submit`: export one job per shot and run them all on the farm.

Thin: the work is operators/adapter/farm.py. With a UI the farm runs in a child process followed by
a timer (the UI never waits) and each result is imported as it finishes; in background mode (or
with ``wait=True``) it waits for the whole farm.
"""

from __future__ import annotations

import bpy

from .adapter import farm, settings


class ANIMATE_ANYTHING_OT_farm_submit(bpy.types.Operator):
    """Export one job per selected camera (or per marker range) and run them on the farm at the
    Farm Address of the preferences; each result is imported when it is done"""

    bl_idname = "animate_anything.farm_submit"
    bl_label = "Submit to Farm"
    bl_options = {"REGISTER"}

    wait: bpy.props.BoolProperty(name="Wait", default=False, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if context.scene is None or not hasattr(context.scene, "animate_anything"):
            return False
        if farm.is_submitting():
            cls.poll_message_set("A farm submission is running: wait for it or cancel it")
            return False
        problems = settings.settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def execute(self, context):
        try:
            run = farm.start_farm(context)
        except (farm.FarmError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if self.wait or bpy.app.background:
            run.wait()
            level = "INFO" if all(state == "done" for _, state, _, _ in run.rows()) else "WARNING"
            self.report({level}, f"Farm: {run.message}")
            return {"FINISHED"}
        run.start_timer()
        self.report({"INFO"}, f"Submitted {len(run.labels)} jobs to the farm")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_farm_submit,)
