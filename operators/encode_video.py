"""`animate_anything.encode_video`: encode a job's PNG frames to MP4 with Blender's FFmpeg, for results
of a generator without PyAV (the encoding itself is operators/adapter/encoding.py)."""

from __future__ import annotations

import bpy

from ..blender_animate.result import ResultError
from .adapter import encoding, result_import, runs


class ANIMATE_ANYTHING_OT_encode_video(bpy.types.Operator):
    """Encode the job's PNG frames to MP4 with Blender's FFmpeg (for results made without PyAV)"""

    bl_idname = "animate_anything.encode_video"
    bl_label = "Encode MP4"
    bl_options = {"REGISTER"}

    directory: bpy.props.StringProperty(
        name="Job Folder", description="A finished job folder (empty = the last job)", subtype="DIR_PATH"
    )
    reimport: bpy.props.BoolProperty(
        name="Import Again", description="Import the job again so it uses the MP4", default=True
    )

    def execute(self, context):
        directory = self.directory or runs.last_job_dir(context.scene)
        if not directory:
            self.report({"ERROR"}, "No job folder given: pick the folder of a finished job")
            return {"CANCELLED"}
        try:
            added = encoding.encode_job(directory)
            if added and self.reimport:
                result_import.import_result(context, directory, **result_import.import_options(context.scene))
        except (ResultError, encoding.EncodeError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Encoding failed: {exc}")
            return {"CANCELLED"}
        if not added:
            self.report({"INFO"}, "The job already has its MP4 files")
        else:
            self.report({"INFO"}, "Wrote " + ", ".join(added.values()))
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_encode_video,)
