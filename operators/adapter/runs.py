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

import time
from pathlib import Path

import bpy

from ...blender_animate.addon.client import GeneratorProcess
from ...blender_animate.addon.run_state import RunState
from ...blender_animate.result import ResultError
from . import result_import
from .job_export import export_job
from .preferences import generator_paths, generator_python, is_blenders_python
from .settings import output_folder
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
    """The last run started in `scene` in this session (None if none)."""
    return _by_scene.get(scene.as_pointer()) if scene is not None else None


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

    def __init__(self, scene, job_dir: Path, process: GeneratorProcess, *, warnings=()):
        python = process.python
        super().__init__(job_dir, python=python, own_python=is_blenders_python(python), warnings=warnings)
        self.scene = scene
        self.process = process
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
            self.process.kill()
            if not self.finished:
                hint = f"This is a bug: please report it with the job folder and {self.process.log_path}"
                self._end("failed", f"internal error while following the generator: {exc!r}", hint)
            return None
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
    """Export the job and start the generator. Raises GenerateError (nothing started) when the
    job cannot be exported or a run is already going. The returned run is `active_run()`."""
    if is_running():
        raise GenerateError("a generation is already running: wait for it or cancel it first")
    try:
        job_dir, warnings = export_job(context, output_folder(context.scene))
    except Exception as exc:  # the exporter's messages (ValueError subclasses) say what to change
        raise GenerateError(f"Export failed: {exc}") from exc
    return run_job(context, Path(job_dir), python=python, warnings=warnings)


def run_job(context, job_dir, *, python: str | None = None, warnings=()) -> GenerateRun:
    """Start the generator on an exported job folder and make it the active run (the caller
    calls `run.start_timer()` or `run.wait()`)."""
    global _active
    if is_running():
        raise GenerateError("a generation is already running: wait for it or cancel it first")
    python = python or generator_python(context)
    process = GeneratorProcess(job_dir, python, extra_paths=generator_paths(python), args=["--watch-parent"])
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
    if not run.finished:
        run.process.kill()
        run.state = "cancelled"
        run._close_progress()


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    # Loading another file drops timers and modal handlers (the run could never finish) and frees
    # the scenes the runs point at.
    stop_active_run()
    _by_scene.clear()


def register():
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    """Disabling the add-on ends a running generator (no orphan process) and its timer."""
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    stop_active_run()
    _by_scene.clear()
