"""Export Job without freezing the UI: the reference is rendered in a background Blender
(reference_job.ReferenceRender, as Generate does), then the job folder is written with it.

`ExportRun(context, folder).start()` checks the settings and the folder (ExportError before any
render), starts the render; `poll()` returns False while it renders and True once the job folder
is written (`job_dir`, `warnings`) or the export failed (`error`); `cancel()` stops the render
and writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from . import reference
from .job_export import ExportError, export_job
from .reference_job import ReferenceRender, render_for_settings
from .settings import settings_problems


class ExportRun:
    def __init__(self, context, folder):
        self.scene = context.scene
        self.folder = Path(folder)
        self.render: ReferenceRender | None = None
        self.job_dir: Path | None = None
        self.warnings: list[str] = []
        self.error = ""

    @property
    def stage(self) -> str:
        return f"reference {self.render.stage}" if self.render is not None else ""

    def start(self, context) -> ExportRun:
        """Raises ExportError (nothing rendered, nothing written) for settings that cannot export
        or an output folder that cannot be written."""
        settings = self.scene.animate_anything
        problems = settings_problems(context, fresh=True)
        if problems:
            raise ExportError("; ".join(problems))
        try:  # refused now, not after the render
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = f"cannot create the output folder {self.folder} ({exc}): pick another Output folder"
            raise ExportError(why) from exc
        if not os.access(self.folder, os.W_OK):
            why = f"the output folder {self.folder} cannot be written: pick another Output folder"
            raise ExportError(why)
        self.render = render_for_settings(context, settings).start()  # the drags hidden, a clean plate
        return self

    def poll(self) -> bool:
        """False while the reference renders; True when the export ended (see job_dir / error)."""
        try:
            rendered = self.render.poll()
        except reference.ReferenceImageError as exc:
            self.render.close()
            self.error = f"Export failed: {exc}"
            return True
        if rendered is None:
            return False
        self.render.close()
        try:
            if bpy.context.scene != self.scene:
                raise ExportError("the scene was switched during the reference render: export again")
            self.job_dir, self.warnings = export_job(bpy.context, self.folder, rendered=rendered)
        except ReferenceError:
            self.error = "the scene was removed during the reference render; nothing was written"
        except (ValueError, OSError) as exc:  # the exporter's messages say what to change
            self.error = f"Export failed: {exc}"
        return True

    def cancel(self) -> None:
        if self.render is not None:
            self.render.close()
        self.error = "Export cancelled: nothing was written"
