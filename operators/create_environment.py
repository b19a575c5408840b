"""`animate_anything.create_environment` (a preferences button): create the generator's Python
environment, a venv with torch and diffusers, in the background (operators/adapter/environments.py;
the commands are blender_animate.addon.environment). Needs Blender's online access."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..blender_animate.addon.environment import REQUIREMENTS, offline_problem, venv_python
from .adapter import environments


class ANIMATE_ANYTHING_OT_create_environment(bpy.types.Operator):
    """Create a Python environment with torch and diffusers for the guided modes (downloads several GB)"""

    bl_idname = "animate_anything.create_environment"
    bl_label = "Create Generator Environment"
    bl_options = {"REGISTER", "INTERNAL"}

    directory: StringProperty(
        name="Folder",
        subtype="DIR_PATH",
        default="",
        description="Where the environment goes (empty: generator-env in the extension's user folder)",
        options={"SKIP_SAVE"},
    )
    requirements: StringProperty(
        name="Requirements",
        default="",
        description="Requirements file (empty: the generator's own)",
        options={"SKIP_SAVE", "HIDDEN"},
    )

    @classmethod
    def poll(cls, context):
        if environments.is_building():
            cls.poll_message_set("The environment is being created (see the status bar)")
            return False
        return True

    def execute(self, context):
        problem = offline_problem(bool(bpy.app.online_access))
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}
        venv_dir = (
            Path(bpy.path.abspath(self.directory))
            if self.directory
            else environments.default_environment_dir()
        )
        requirements = Path(self.requirements) if self.requirements else REQUIREMENTS
        if not requirements.is_file():
            self.report(
                {"ERROR"}, f"The requirements file {requirements} is missing: reinstall the extension"
            )
            return {"CANCELLED"}
        build = environments.start_build(venv_dir, requirements)
        if not bpy.app.background:
            self.report({"INFO"}, f"Creating the generator environment in {venv_dir} (log: {build.log_path})")
            return {"FINISHED"}
        if build.state == "done":
            self.report({"INFO"}, f"Generator environment ready: {venv_python(venv_dir)}")
            return {"FINISHED"}
        self.report({"ERROR"}, f"Creating the generator environment failed: {build.message}")
        return {"CANCELLED"}


classes = (ANIMATE_ANYTHING_OT_create_environment,)
