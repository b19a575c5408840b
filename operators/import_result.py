"""`animate_anything.import_result`: bring a finished job's video into the Sequencer and behind the
active camera (the bpy writes are operators/adapter/result_import.py)."""

from __future__ import annotations

import bpy

from ..blender_animate.result import ResultError
from .adapter import result_import, runs


class ANIMATE_ANYTHING_OT_import_result(bpy.types.Operator):
    """Bring a finished job's video into the Sequencer and behind the active camera"""

    bl_idname = "animate_anything.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(
        name="Job Folder", description="A job folder with a finished out/ folder", subtype="DIR_PATH"
    )
    strip: bpy.props.BoolProperty(
        name="Sequencer Strip", description="Add the video as a strip in the Sequencer", default=True
    )
    background: bpy.props.BoolProperty(
        name="Camera Background", description="Show the video behind the active camera", default=True
    )
    plane: bpy.props.BoolProperty(
        name="Camera Plane",
        description="Also add a plane in front of the camera textured with the video",
        default=False,
    )
    plane_distance: bpy.props.FloatProperty(
        name="Plane Distance", description="Distance of the plane from the camera", default=10.0, min=0.01
    )

    def invoke(self, context, event):
        if not self.directory:
            last = runs.last_job_dir(context.scene)
            if last:
                self.directory = last
            else:
                context.window_manager.fileselect_add(self)
                return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "No job folder given: pick the folder of a finished job")
            return {"CANCELLED"}
        options = result_import.import_options(context.scene)
        for name in options:  # what the caller set wins over the scene's Import settings
            if self.properties.is_property_set(name):
                options[name] = getattr(self, name)
        try:
            summary = result_import.import_result(
                context, self.directory, plane_distance=self.plane_distance, **options
            )
        except ResultError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for warning in summary["warnings"]:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, result_import.describe(summary))
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_import_result,)
