"""The generations this Blender follows: export the job, start the generator, follow its events,
import what it makes.

`start_run(context)` exports the job (job_export.export_job) into the output folder and starts
``python -m backend run JOB`` (blender_animate.addon.client.GeneratorProcess) with the interpreter
from the add-on preferences (empty = the Python Blender runs). `GenerateRun` follows it:

- with a UI: a `bpy.app.timers` function (`GenerateRun.tick`, which returns its next interval)
  polls the events and shows progress in the window manager's progress cursor, the status bar and
  the sidebar; the Generate operator's modal handler cancels on Esc and, when the generator is
  done, imports the result itself, so that the import is that operator's one undo step.
- in background mode (``blender -b``, the bpy module, render farms) or for scripts, `wait()` or the
  timer imports at the end.

The live state (blender_animate.addon.run_state.RunState) is kept here, in memory, never in the
.blend: a file saved mid-run does not say "running", and undo cannot bring back old progress. On
``error`` the message and hint are kept, the job folder is kept for inspection and nothing in the
.blend changes. One run at a time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import bpy

from ...blender_animate.addon import standby
from ...blender_animate.addon.client import GeneratorProcess
from ...blender_animate.addon.run_state import RunState
from ...blender_animate.result import ResultError
from . import reference, result_import, result_timing
from .job_export import export_job
from .preferences import generator_paths, generator_python, is_blenders_python, keep_generator_ready
from .reference_job import ReferenceRender, render_for_settings
from .settings import (
    crop_warning,
    output_folder,
    output_warning,
    settings_problems,
    weights_problems,
)
from .ui import redraw_areas, status_text

POLL_INTERVAL = 0.1  # seconds between two polls of the generator's events

_active: GenerateRun | None = None
_by_scene: dict[int, GenerateRun] = {}  # scene.as_pointer() -> the last run started in it


def active_run() -> GenerateRun | None:
    """The run in progress (or the last one, until the next starts)."""
    return _active


def is_running() -> bool:
    return _active is not None and not _active.finished


def run_for(scene) -> GenerateRun | None:
    """The last run started in `scene` in this session (None if none). A run whose scene is gone
    is forgotten: a new scene may be allocated at the freed scene's address."""
    run = _by_scene.get(scene.as_pointer()) if scene is not None else None
    if run is None:
        return None
    try:
        run.scene.name  # noqa: B018 - raises ReferenceError when that scene was freed
    except ReferenceError:
        del _by_scene[scene.as_pointer()]
        return None
    return run


def last_job_dir(scene) -> str:
    """The job folder of the last run in `scene` ("" if none): what Import and Encode default to."""
    run = run_for(scene)
    return str(run.job_dir) if run is not None else ""


class GenerateRun(RunState):
    """One generation: a started GeneratorProcess, its RunState, and what to do in Blender with
    its events. `tick()` is the timer function (also called in a loop by `wait()` and by tests):
    it polls, shows progress, and when the generator is done imports the result (or, when
    `import_in_operator` is set, leaves that to the Generate operator: `ready_to_import`); it
    returns the next interval, or None when there is nothing more to poll."""

    def __init__(
        self,
        scene,
        job_dir: Path,
        process: GeneratorProcess | None,
        *,
        warnings=(),
        render=None,
        python: str = "",
    ):
        python = process.python if process is not None else python
        super().__init__(job_dir, python=python, own_python=is_blenders_python(python), warnings=warnings)
        self.scene = scene
        self.process = process
        self.render: ReferenceRender | None = render  # stage 1 when the reference is rendered
        self.import_in_operator = False
        self.ready_to_import = False
        self.reported = False  # the operator reported the end already
        self._progress_open = False
        self._printed = ""
        self._warnings_reported = 0
        # Blender matches timer functions by identity and every `self.tick` is a new bound
        # method: register, test and unregister this one object.
        self.timer = self.tick

    # -- the timer function
    def tick(self) -> float | None:
        if self.finished or self.ready_to_import:
            return None
        try:
            if self.process is None:
                return self._tick_render()
            for event in self.process.poll():
                outcome = self.apply(event)
                if outcome == "done":
                    if self.import_in_operator:
                        self.ready_to_import = True
                        self.stage = "importing"
                        self._show()
                        self.stop_timer()
                    else:
                        self.import_result()
                    return None
                if outcome == "ended":
                    self._ended()
                    return None
                self._show()
        except Exception as exc:  # a timer must not raise: Blender would drop it and the run hang
            if self.process is not None:
                self.process.kill()
            if self.render is not None:
                self.render.close()
            if not self.finished:
                log = self.process.log_path if self.process is not None else "the reference render's log"
                hint = f"This is a bug: please report it with the job folder and {log}"
                self._end("failed", f"internal error while following the generator: {exc!r}", hint)
            return None
        return POLL_INTERVAL

    def _tick_render(self) -> float | None:
        """Stage 1: follow the background reference render; when it is done, export the job with
        it and start the generator (stage 2)."""
        try:
            rendered = self.render.poll()
        except reference.ReferenceImageError as exc:
            self.render.close()
            self._end("failed", f"Export failed: {exc}", "nothing was written, the scene is unchanged")
            return None
        if rendered is None:
            self.stage = f"reference {self.render.stage}"
            self.fraction = 0.1 * self.render.fraction
            self._show()
            return POLL_INTERVAL
        self.render.close()
        try:
            if bpy.context.scene != self._scene():
                raise GenerateError("the scene was switched during the reference render: Generate again")
            job_dir, warnings = export_job(bpy.context, self.job_dir, rendered=rendered)
        except ReferenceError:
            self._end("failed", "the scene was removed during the reference render; nothing was written", "")
            return None
        except Exception as exc:  # the exporter's messages say what to change
            self._end("failed", f"Export failed: {exc}", "")
            return None
        self.job_dir = Path(job_dir)
        self.warnings.extend(warnings)
        self.process = _generator_process(self.job_dir, self.python)
        self.process.start()
        self.stage = "starting"
        self._show()
        return POLL_INTERVAL

    def start_timer(self) -> None:
        """Poll from a bpy.app.timers function (with a UI; never fires in the bpy module)."""
        if not bpy.app.timers.is_registered(self.timer):
            bpy.app.timers.register(self.timer, first_interval=POLL_INTERVAL)

    def stop_timer(self) -> None:
        if bpy.app.timers.is_registered(self.timer):
            bpy.app.timers.unregister(self.timer)

    def cancel(self) -> None:
        if self.ready_to_import:  # the generator is done; only the import was left
            self._end("cancelled", "Generation finished but was not imported: use Import Result")
        elif not self.finished and self.process is None:  # stage 1: the reference render
            self.render.close()
            self._end("cancelled", "Generation cancelled during the reference render: the scene is unchanged")
        elif not self.finished:
            self.process.cancel()
            self.stage = "cancelling"
            self._show()

    def wait(self) -> None:
        """Synchronous mode: tick until the end (Ctrl+C cancels)."""
        while not self.finished and not self.ready_to_import:
            try:
                interval = self.tick()
                if interval is not None:
                    time.sleep(min(interval, 0.05))
            except KeyboardInterrupt:
                self.cancel()

    # -- the end
    def import_result(self) -> None:
        """Import the finished job into the run's scene (with its Import settings) and end the run."""
        self.ready_to_import = False
        try:
            scene = self._scene()
            if not getattr(scene.animate_anything, "auto_import", True):
                self._end("done", f"Finished: {self.job_dir} (not imported: Import When Done is off)", "")
                return
            options = result_import.import_options(scene)
            self.summary = result_import.import_result(bpy.context, self.job_dir, scene=scene, **options)
        except ResultError as exc:
            self._end("failed", f"the generator finished but its output cannot be imported: {exc}", "")
            return
        except ReferenceError:
            self._end("failed", "the scene was removed while the generator ran; nothing was imported", "")
            return
        self.warnings.extend(self.summary["warnings"])
        self._end("done", f"{result_import.describe(self.summary)} in {self.seconds:.1f} s", "")

    def _scene(self):
        self.scene.name  # noqa: B018 - raises ReferenceError when the scene is gone
        return self.scene

    def _ended(self) -> None:
        self._show()
        self.stop_timer()

    def _end(self, state: str, message: str, hint: str = "") -> None:
        self.end(state, message, hint)
        self._ended()

    # -- what the user sees
    def _show(self) -> None:
        if bpy.app.background and self.stage != self._printed:
            self._printed = self.stage
            print(f"Animate Anything: {self.stage}", flush=True)
        wm = bpy.context.window_manager
        if wm is None:
            return
        if not self.finished:
            if not self._progress_open:
                wm.progress_begin(0, 1000)
                self._progress_open = True
            wm.progress_update(int(self.fraction * 1000))
            status_text(f"Animate Anything: {self.stage}   (Esc or Cancel to stop)")
        else:
            self._close_progress()
        redraw_areas({"VIEW_3D", "SEQUENCE_EDITOR", "PROPERTIES", "IMAGE_EDITOR"})

    def _close_progress(self) -> None:
        wm = bpy.context.window_manager
        if self._progress_open and wm is not None:
            wm.progress_end()
        self._progress_open = False
        status_text(None)

    def report_warnings(self, report) -> None:
        """Report the warnings not reported yet (the export's at the start, the rest at the end)."""
        for warning in self.warnings[self._warnings_reported :]:
            report({"WARNING"}, warning)
        self._warnings_reported = len(self.warnings)

    def report_to(self, report) -> None:
        """Report the end through an operator's self.report (once)."""
        if self.reported or not self.finished:
            return
        self.reported = True
        self.report_warnings(report)
        level = {"done": "INFO", "cancelled": "WARNING"}.get(self.state, "ERROR")
        report({level}, self.full_message())


class GenerateError(Exception):
    """Generate could not start; the message says what to do."""


def start_run(context, *, python: str | None = None) -> GenerateRun:
    """Check the settings and the model weights, then either start the background reference render
    (Reference: Render; the export and the generator follow from `tick`) or export the job and start
    the generator. Raises GenerateError (nothing started, nothing rendered) when the settings are
    invalid, a model folder is missing, the job cannot be exported or a run is already going. The
    returned run is `active_run()`."""
    global _active
    if is_running():
        raise GenerateError("a generation is already running: wait for it or cancel it first")
    scene = context.scene
    settings = scene.animate_anything
    problems = settings_problems(context, fresh=True) + weights_problems(context, settings)
    if problems:
        raise GenerateError(f"Export failed: {'; '.join(problems)}")
    python = python or generator_python(context)
    folder = output_folder(scene)
    warnings = [w for w in (output_warning(scene), crop_warning(scene, settings)) if w]
    if settings.reference_source != "RENDER":
        try:
            job_dir, export_warnings = export_job(context, folder)
        except Exception as exc:  # the exporter's messages (ValueError subclasses) say what to change
            raise GenerateError(f"Export failed: {exc}") from exc
        return run_job(context, Path(job_dir), python=python, warnings=warnings + export_warnings)
    try:
        folder.mkdir(parents=True, exist_ok=True)  # refused now, not after the render
        if not os.access(folder, os.W_OK):
            raise OSError(f"the output folder {folder} cannot be written: pick another Output folder")
        render = render_for_settings(context, settings).start()
    except (OSError, ValueError) as exc:  # ReferenceImageError, or the camera's and drags' readers
        raise GenerateError(f"Export failed: {exc}") from exc
    process = _generator_process(folder, python, context)
    if process.standby:  # it warms up while the reference renders
        process.prepare_standby(settings.mode, (settings.width, settings.height))
    _active = GenerateRun(scene, folder, None, warnings=warnings, render=render, python=python)
    _active.stage = f"reference {render.stage}"
    _by_scene[scene.as_pointer()] = _active
    _active._show()
    return _active


def _generator_process(job_dir: Path, python: str, context=None) -> GeneratorProcess:
    return GeneratorProcess(
        job_dir,
        python,
        extra_paths=generator_paths(python),
        args=["--watch-parent"],
        env=result_timing.generator_env(job_dir),
        standby=keep_generator_ready(context),
    )


def run_job(context, job_dir, *, python: str | None = None, warnings=()) -> GenerateRun:
    """Start the generator on an exported job folder and make it the active run (the caller
    calls `run.start_timer()` or `run.wait()`)."""
    global _active
    if is_running():
        raise GenerateError("a generation is already running: wait for it or cancel it first")
    python = python or generator_python(context)
    process = _generator_process(Path(job_dir), python, context)
    _active = GenerateRun(context.scene, Path(job_dir), process, warnings=warnings)
    _by_scene[context.scene.as_pointer()] = _active
    process.start()
    _active._show()
    return _active


def run_synchronously(context, wait: bool) -> bool:
    """Background mode (blender -b, the bpy module, farms), no window, or asked to wait."""
    return bpy.app.background or wait or context.window is None


def modal_step(run: GenerateRun, event_type: str, event_value: str) -> set[str]:
    """The Generate operator's modal logic (called directly by tests: modal operators get no events
    in the bpy module). Esc cancels; a finished generator's result is imported here (so the import
    is the operator's undo step); the operator ends once the run has ended."""
    if event_type == "ESC" and event_value == "PRESS":
        run.cancel()
        return {"RUNNING_MODAL"}
    if run.ready_to_import:
        run.import_result()
    if run.finished:
        return {"FINISHED"} if run.state == "done" else {"CANCELLED"}
    return {"PASS_THROUGH"}


def stop_active_run() -> None:
    """End the active run now: its process group is killed and its timer removed."""
    global _active
    run = _active
    _active = None
    if run is None:
        return
    run.stop_timer()
    if run.render is not None:
        run.render.close()
    if not run.finished:
        if run.process is not None:
            run.process.kill()
        # Ended, not left "running" with a stale stage (the add-on disabled, another file loaded).
        run.end("cancelled", "Generation stopped: the add-on was disabled or another file was loaded")
        run._close_progress()


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    # Loading another file drops timers and modal handlers (the run could never finish) and frees
    # the scenes the runs point at.
    stop_active_run()
    standby.stop()  # the next enable may run other code, or another Python
    _by_scene.clear()


def register():
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    """Disabling the add-on ends a running generator (no orphan process), its timer and the
    standby generator."""
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    stop_active_run()
    standby.stop()  # the next enable may run other code, or another Python
    _by_scene.clear()
