"""`animate_anything.generate`: export the job, run the generator, import the video it makes.

Thin: the run itself is operators/adapter/runs.py. With a UI the operator is modal (Esc cancels)
and imports the result when the generator is done, so that the import is this operator's undo
step; in background mode (or with ``wait=True``) it runs synchronously.
"""

from __future__ import annotations

import bpy

from .adapter import runs, settings
from .adapter.ui import ModalTimer


class ANIMATE_ANYTHING_OT_generate(ModalTimer, bpy.types.Operator):
    """Export the job, run the generator and import the video it makes (Esc cancels)"""

    bl_idname = "animate_anything.generate"
    bl_label = "Generate"
    # UNDO: the import of the result (the only change to the .blend) is one undo step.
    bl_options = {"REGISTER", "UNDO"}

    wait: bpy.props.BoolProperty(
        name="Wait",
        description="Block until the video is ready (always so in background mode)",
        default=False,
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or not hasattr(scene, "animate_anything"):
            return False
        if runs.is_running():
            cls.poll_message_set("A generation is running: wait for it or press Cancel")
            return False
        problems = settings.settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        try:
            run = runs.start_run(context)
        except runs.GenerateError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if runs.run_synchronously(context, self.wait):
            run.wait()
            run.report_to(self.report)
            return {"FINISHED"} if run.state == "done" else {"CANCELLED"}
        run.import_in_operator = True
        run.start_timer()
        run.report_warnings(self.report)
        self.start_modal(context, 0.25)
        self.report({"INFO"}, f"Generating into {run.job_dir} (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = runs.active_run()
        if run is None:
            self.remove_timer(context)
            return {"CANCELLED"}
        result = runs.modal_step(run, event.type, event.value)
        if result & {"FINISHED", "CANCELLED"}:
            run.report_to(self.report)
            self.remove_timer(context)
        return result

    def cancel(self, context):  # Blender ends the modal handler (file load, quit)
        run = runs.active_run()
        if run is not None:
            run.cancel()
        self.remove_timer(context)


classes = (ANIMATE_ANYTHING_OT_generate,)
