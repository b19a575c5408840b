"""`animate_anything.export_job`: write the job folder without running anything (the writing itself
is operators/adapter/job_export.py)."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from .adapter import job_export, settings


class ANIMATE_ANYTHING_OT_export_job(bpy.types.Operator):
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

    @classmethod
    def poll(cls, context):
        problems = settings.settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def execute(self, context):
        folder = (
            Path(bpy.path.abspath(self.directory))
            if self.directory
            else settings.output_folder(context.scene)
        )
        try:
            job_dir, warnings = job_export.export_job(context, folder)
        except (ValueError, OSError) as exc:
            self.report({"ERROR"}, f"Export failed: {exc}")
            return {"CANCELLED"}
        for warning in warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"Exported the job to {job_dir}")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_export_job,)
