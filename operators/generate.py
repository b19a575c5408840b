"""Generate: export the job, run the generator process, follow it, import what it makes.

`animate_anything.generate` exports the job (`export_job`) into the output folder, starts
``python -m backend run JOB`` (blender_animate.client.GeneratorProcess) with the interpreter from
the add-on preferences (empty = the Python Blender runs), and follows its events:

- with a UI: a `bpy.app.timers` function (`GenerateRun.tick`, which returns its next interval)
  polls the events and writes progress into ``scene.animate_anything`` (job_running, job_progress,
  job_stage), the window manager's progress cursor and the status bar; a modal handler cancels on
  Esc and reports the end. `animate_anything.cancel` cancels too. The UI never waits on the process.
- in background mode (``blender -b``, the bpy module, render farms) it runs synchronously.

On ``done`` the result is imported (`import_result`, with the scene's Import settings); on
``error`` the message and hint are reported, the job folder is kept for inspection and nothing in
the .blend changes except the run's status fields. One run at a time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import bpy

from ..blender_animate.client import GeneratorProcess, extension_site_packages
from . import export_job as exporter
from . import import_result as importer

POLL_INTERVAL = 0.1  # seconds between two polls of the generator's events

_active: GenerateRun | None = None


def active_run() -> GenerateRun | None:
    """The run in progress (or the last one, until the next starts)."""
    return _active


def is_running() -> bool:
    return _active is not None and not _active.finished


# ----------------------------------------------------------------------------- settings
def generator_python(context=None) -> str:
    """The interpreter that runs the generator: the preferences' python_path, else Blender's own."""
    path = getattr(exporter.preferences(context), "python_path", "")
    return bpy.path.abspath(path) if path.strip() else sys.executable


def is_blenders_python(python: str) -> bool:
    """Whether `python` is the interpreter Blender runs (the one that needs nothing installed)."""
    return Path(python).resolve() == Path(sys.executable).resolve()


def generator_paths(python: str) -> list[str]:
    """Extra PYTHONPATH entries: the bundled wheels, only for Blender's own Python (a different
    interpreter may be another Python version, which the bundled wheels would break)."""
    return extension_site_packages(sys.path) if is_blenders_python(python) else []


# ----------------------------------------------------------------------------- one run
class GenerateRun:
    """One generation: a started GeneratorProcess and what to do with its events.

    `tick()` is the timer function (also called in a loop in background mode and by tests): it
    polls, updates the scene's status fields, and when the run ends imports the result or records
    the error; it returns the next interval, or None when the run is over.
    State: "running", then "done", "failed" or "cancelled"; message/hint say why.
    """

    def __init__(self, scene, job_dir: Path, process: GeneratorProcess, *, warnings=()):
        self.scene = scene
        self.job_dir = Path(job_dir)
        self.process = process
        self.state = "running"
        self.message = ""
        self.hint = ""
        self.summary: dict | None = None
        self.warnings: list[str] = list(warnings)
        self.stage = "starting"
        self.fraction = 0.0
        self.started_at = time.monotonic()
        self.reported = False  # the modal operator reported the end already
        self._progress_open = False
        self._printed = ""
        self._warnings_reported = 0
        # Blender matches timer functions by identity and every `self.tick` is a new bound
        # method: register, test and unregister this one object.
        self.timer = self.tick

    @property
    def finished(self) -> bool:
        return self.state != "running"

    # -- the timer function
    def tick(self) -> float | None:
        if self.finished:
            return None
        try:
            for event in self.process.poll():
                self._apply(event)
                if self.finished:
                    return None
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
        if not self.finished:
            self.process.cancel()
            self.stage = "cancelling"
            self._show()

    def wait(self) -> None:
        """Synchronous mode: tick until the end (Ctrl+C cancels)."""
        while not self.finished:
            try:
                interval = self.tick()
                if interval is not None:
                    time.sleep(min(interval, 0.05))
            except KeyboardInterrupt:
                self.cancel()

    # -- events
    def _apply(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "started":
            self.stage = "started"
            self._show()
        elif kind == "progress":
            total = max(1, int(event.get("total") or 1))
            step = min(max(0, int(event.get("step") or 0)), total)
            self.fraction = step / total
            self.stage = f"{event.get('stage', '')} {step}/{total}".strip()
            self._show()
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "log":
            print(f"animate_anything generator: {event.get('message', '')}")
        elif kind == "done":
            self._import()
        elif kind == "error":
            self._error(event)

    def _error(self, event: dict) -> None:
        kind = event.get("kind")
        message = str(event.get("message") or "the generator failed")
        hint = str(event.get("hint") or "")
        if kind == "cancelled":
            self._end("cancelled", "Generation cancelled: nothing was imported, the scene is unchanged", "")
            return
        own_python = is_blenders_python(self.process.python)
        if kind == "missing_dependency" and not own_python and "Blender's own" not in hint:
            hint += (
                " Or clear Generator Python in the add-on preferences: Blender's own Python runs the "
                "preview with nothing installed."
            )
        self._end("failed", message, hint.strip())

    def _import(self) -> None:
        try:
            scene = self._scene()
            options = importer.import_options(scene)
            if not getattr(scene.animate_anything, "auto_import", True):
                self._end("done", f"Finished: {self.job_dir} (not imported: Import When Done is off)", "")
                return
            self.summary = importer.import_result(bpy.context, self.job_dir, scene=scene, **options)
        except importer.ResultError as exc:
            self._end("failed", f"the generator finished but its output cannot be imported: {exc}", "")
            return
        except ReferenceError:
            self._end("failed", "the scene was removed while the generator ran; nothing was imported", "")
            return
        self.warnings.extend(self.summary["warnings"])
        _undo_push("Animate Anything: import result")
        seconds = time.monotonic() - self.started_at
        self._end("done", f"{importer.describe(self.summary)} in {seconds:.1f} s", "")

    def _scene(self):
        self.scene.name  # noqa: B018 - raises ReferenceError when the scene is gone
        return self.scene

    # -- what the user sees
    def _show(self) -> None:
        try:
            settings = self._scene().animate_anything
            settings.job_running = not self.finished
            settings.job_progress = self.fraction
            settings.job_stage = self.stage
        except (ReferenceError, AttributeError):
            pass
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

    def _end(self, state: str, message: str, hint: str) -> None:
        self.state, self.message, self.hint = state, message, hint
        if state == "done":
            self.fraction = 1.0
        self.stage = state
        try:
            settings = self._scene().animate_anything
            settings.last_job_dir = str(self.job_dir)
            settings.last_message = self.full_message()
        except (ReferenceError, AttributeError):
            pass
        self._show()
        self.stop_timer()

    def full_message(self) -> str:
        text = self.message
        if self.hint:
            text = text.rstrip(".") + f". {self.hint}"
        if self.state != "done":
            text += f" (job folder kept: {self.job_dir})"
        return text

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


def _undo_push(message: str) -> None:
    """An undo step for what a timer changed (operators get theirs from bl_options; timers do not)."""
    if bpy.app.background:
        return
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError:  # no window context in this timer: the change merges into the next step
        pass


def status_text(text: str | None) -> None:
    """Show `text` in the status bar of every window (None: give the bar back to Blender). Works
    from timers, which have no window in their context."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        try:
            window.workspace.status_text_set(text)
        except (AttributeError, RuntimeError, TypeError):
            pass


def redraw_areas(area_types: set[str]) -> None:
    """Tag the areas of these types (e.g. {"PREFERENCES"}) in every window for redrawing."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in getattr(window.screen, "areas", ()):
            if area.type in area_types:
                area.tag_redraw()


def start_run(context, *, python: str | None = None) -> GenerateRun:
    """Export the job and start the generator. Raises GenerateError (nothing started) when the
    job cannot be exported or a run is already going. The returned run is `active_run()`."""
    if is_running():
        raise GenerateError("a generation is already running: wait for it or cancel it first")
    try:
        job_dir, warnings = exporter.export_job(context, exporter.output_folder(context.scene))
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
    process.start()
    _active._show()
    return _active


class GenerateError(Exception):
    """Generate could not start; the message says what to do."""


def run_synchronously(context, wait: bool) -> bool:
    """Background mode (blender -b, the bpy module, farms), no window, or asked to wait."""
    return bpy.app.background or wait or context.window is None


def modal_step(run: GenerateRun, event_type: str, event_value: str) -> set[str]:
    """The modal handler's logic (called directly by tests: modal operators get no events in the
    bpy module). Esc cancels; the operator ends once the run has ended."""
    if event_type == "ESC" and event_value == "PRESS":
        run.cancel()
        return {"RUNNING_MODAL"}
    if run.finished:
        return {"FINISHED"} if run.state == "done" else {"CANCELLED"}
    return {"PASS_THROUGH"}


# ----------------------------------------------------------------------------- operators
class ModalTimer:
    """Mixin of a modal operator woken by a window-manager timer, so that modal() sees a background
    job end without waiting for user input (generate, check_generator)."""

    _timer = None

    def start_modal(self, context, interval: float) -> None:
        wm = context.window_manager
        self._timer = wm.event_timer_add(interval, window=context.window)
        wm.modal_handler_add(self)

    def remove_timer(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


class ANIMATE_ANYTHING_OT_generate(ModalTimer, bpy.types.Operator):
    """Export the job, run the generator and import the video it makes (Esc cancels)"""

    bl_idname = "animate_anything.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    wait: bpy.props.BoolProperty(
        name="Wait",
        description="Block until the video is ready (always so in background mode)",
        default=False,
        options={"SKIP_SAVE"},
    )

    @classmethod
    def poll(cls, context):
        scene = context.scene
        if scene is None or not hasattr(scene, "animate_anything"):
            return False
        if is_running():
            cls.poll_message_set("A generation is running: wait for it or press Cancel")
            return False
        problems = exporter.settings_problems(context)
        if problems:
            cls.poll_message_set(problems[0])
            return False
        return True

    def invoke(self, context, event):
        return self.execute(context)

    def execute(self, context):
        try:
            run = start_run(context)
        except GenerateError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if run_synchronously(context, self.wait):
            run.wait()
            run.report_to(self.report)
            return {"FINISHED"} if run.state == "done" else {"CANCELLED"}
        run.start_timer()
        run.report_warnings(self.report)
        self.start_modal(context, 0.25)
        self.report({"INFO"}, f"Generating into {run.job_dir} (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = _active
        if run is None:
            self.remove_timer(context)
            return {"CANCELLED"}
        result = modal_step(run, event.type, event.value)
        if result & {"FINISHED", "CANCELLED"}:
            run.report_to(self.report)
            self.remove_timer(context)
        return result

    def cancel(self, context):  # Blender ends the modal handler (file load, quit)
        if _active is not None:
            _active.cancel()
        self.remove_timer(context)


class ANIMATE_ANYTHING_OT_cancel(bpy.types.Operator):
    """Stop the running generation (the process is terminated, then killed if it does not stop)"""

    bl_idname = "animate_anything.cancel"
    bl_label = "Cancel"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        if not is_running():
            cls.poll_message_set("No generation is running")
            return False
        return True

    def execute(self, context):
        _active.cancel()
        self.report({"INFO"}, "Cancelling the generation")
        return {"FINISHED"}


classes = (ANIMATE_ANYTHING_OT_generate, ANIMATE_ANYTHING_OT_cancel)


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
    # Loading another file drops timers and modal handlers: the run could never finish.
    stop_active_run()


@bpy.app.handlers.persistent
def _on_load_post(*_args):
    # A file saved while a run was going (then Blender quit or crashed) still says "running".
    for scene in bpy.data.scenes:
        settings = getattr(scene, "animate_anything", None)
        if settings is not None and settings.job_running and not is_running():
            settings.job_running = False
            settings.job_stage = "interrupted"


def register():
    bpy.app.handlers.load_pre.append(_on_load_pre)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister():
    """Disabling the add-on ends a running generator (no orphan process) and its timer."""
    for handlers, fn in (
        (bpy.app.handlers.load_pre, _on_load_pre),
        (bpy.app.handlers.load_post, _on_load_post),
    ):
        if fn in handlers:
            handlers.remove(fn)
    stop_active_run()
