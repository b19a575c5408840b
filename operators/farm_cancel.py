"""`animate_anything.farm_cancel`: cancel every job of the running farm submission."""

from __future__ import annotations

import bpy

from .adapter import farm


class ANIMATE_ANYTHING_OT_farm_cancel(bpy.types.Operator):
    """Cancel the farm submission: waiting jobs never start, running ones stop, nothing more is imported"""

    bl_idname = "animate_anything.farm_cancel"
    bl_label = "Cancel Farm"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not farm.is_submitting():
            cls.poll_message_set("No farm submission is running")
            return False
        return True

    def execute(self, context):
        farm.active_farm().cancel()
        self.report({"INFO"}, "Cancelling the farm jobs")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_farm_cancel,)
