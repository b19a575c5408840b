"""`animate_anything.export_job`: write the job folder without running anything (the writing itself
is operators/adapter/job_export.py). With a UI and Reference = Render the operator is modal: the
reference renders in a background Blender (operators/adapter/export_run.py), Esc stops it, the UI
never waits; in background mode, or for a picked image, it exports at once."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from .adapter import job_export, settings
from .adapter.export_run import ExportRun
from .adapter.ui import ModalTimer, status_text

POLL_INTERVAL = 0.2


class ANIMATE_ANYTHING_OT_export_job(ModalTimer, bpy.types.Operator):
    """Write the job folder (camera, drags, reference image) without running anything"""

    bl_idname = "animate_anything.export_job"
    bl_label = "Export Job"
    bl_options = {"REGISTER"}

    directory: StringProperty(
        name="Folder",
        subtype="DIR_PATH",
        default="",
        description="Folder that receives the new job folder (empty = the Output folder of the settings)",
    )

    _run: ExportRun | None = None

    @classmethod
    def poll(cls, context):
        problems = settings.settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def _folder(self, context) -> Path:
        if self.directory:
            return Path(bpy.path.abspath(self.directory))
        return settings.output_folder(context.scene)

    def execute(self, context):
        s = context.scene.animate_anything
        if s.reference_source == "RENDER" and not bpy.app.background and context.window is not None:
            try:
                self._run = ExportRun(context, self._folder(context)).start(context)
            except (ValueError, OSError) as exc:
                self.report({"ERROR"}, f"Export failed: {exc}")
                return {"CANCELLED"}
            self.start_modal(context, POLL_INTERVAL)
            self.report({"INFO"}, "Rendering the reference in the background (Esc to cancel)")
            return {"RUNNING_MODAL"}
        try:
            job_dir, warnings = job_export.export_job(context, self._folder(context))
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        return self._done(job_dir, warnings)

    def modal(self, context, event):
        run = self._run
        if event.type == "ESC" and event.value == "PRESS":
            run.cancel()
        elif event.type != "TIMER" or not run.poll():
            status_text(f"Animate Anything export: {run.stage}   (Esc to cancel)")
            return {"PASS_THROUGH"}
        self.remove_timer(context)
        status_text(None)
        if run.job_dir is None:
            self.report({"WARNING"} if "cancelled" in run.error else {"ERROR"}, run.error)
            return {"CANCELLED"}
        return self._done(run.job_dir, run.warnings)

    def cancel(self, context):  # Blender ends the modal handler (file load, quit)
        if self._run is not None:
            self._run.cancel()
        self.remove_timer(context)

    def _done(self, job_dir, warnings):
        for warning in warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Exported the job to {job_dir}")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_export_job,)
