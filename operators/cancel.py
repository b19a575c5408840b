"""`animate_anything.cancel`: stop the running generation."""

from __future__ import annotations

import bpy

from .adapter import runs


class ANIMATE_ANYTHING_OT_cancel(bpy.types.Operator):
    """Stop the running generation (the process is terminated, then killed if it does not stop)"""

    bl_idname = "animate_anything.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not runs.is_running():
            cls.poll_message_set("No generation is running")
            return False
        return True

    def execute(self, context):
        runs.active_run().cancel()
        self.report({"INFO"}, "Cancelling the generation")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_cancel,)
