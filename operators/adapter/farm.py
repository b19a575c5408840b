"""Submitting shots to the farm from Blender and importing each result as it finishes.

`shots(context)` decides the shots: one per selected camera (over the scene's frame range), else
one per timeline marker range (marker i to the frame before marker i+1, the last one to the end of
the range; the camera Blender shows there, `marker_camera`), else the scene's one shot. (Cameras
bound to markers switch the scene camera during the export as they do in Blender, so per-camera
shots are for scenes without camera-bound markers.)
`start_farm(context)` refuses a farm address that is another machine while Blender's online access
is off, exports one job per shot into `<Output>/farm-<YYYYmmdd-HHMMSS>/` (job_export.export_job,
with the scene camera and frame range set for that shot and restored after), and starts
``python -m backend farm run JOB...`` (blender_animate.addon.farm_client.FarmProcess) with the
generator Python of the preferences and the preference Farm Address. `FarmRun.tick` (a
bpy.app.timers function; with no UI call it, or `wait()`) follows every job: per-job stage and
fraction for the Output panel (`rows()`), and each job's result imported into the scene as soon as
that job is done. The live state is kept in memory only, as for Generate. One farm submission at a
time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from ...blender_animate.addon.farm_client import FarmProcess, online_problem
from ...blender_animate.result import ResultError
from . import result_import
from .job_export import export_job
from .preferences import generator_paths, generator_python, get_preferences
from .settings import frame_range, output_folder
from .ui import redraw_areas

POLL_INTERVAL = 0.2
_active: FarmRun | None = None


class FarmError(ValueError):
    """The submission cannot start (the message says what to change); nothing was started."""


@dataclass
class Shot:
    label: str
    camera: object  # a camera Object
    start: int
    end: int


def shots(context) -> list[Shot]:
    """The shots a submission exports (see the module docstring)."""
    scene = context.scene
    start, end = frame_range(scene, scene.animate_anything)
    cameras = [o for o in context.selected_objects if o.type == "CAMERA"]
    if cameras:
        return [Shot(o.name, o, start, end) for o in sorted(cameras, key=lambda o: o.name)]
    markers = sorted((m for m in scene.timeline_markers if start <= m.frame <= end), key=lambda m: m.frame)
    if markers:
        bounds = [m.frame for m in markers[1:]] + [end + 1]
        return [
            Shot(m.name or f"F{m.frame}", marker_camera(scene, m.frame), m.frame, b - 1)
            for m, b in zip(markers, bounds)
            if b - 1 > m.frame
        ]
    return [Shot(scene.name, scene.camera, start, end)]


def marker_camera(scene, frame: int):
    """The camera Blender shows at `frame`: that of the last camera-bound marker at or before it,
    else of the first camera-bound marker, else the scene camera (Blender's marker binding rule)."""
    bound = sorted((m for m in scene.timeline_markers if m.camera is not None), key=lambda m: m.frame)
    before = [m for m in bound if m.frame <= frame]
    if before:
        return before[-1].camera
    return bound[0].camera if bound else scene.camera


def farm_address(context) -> str:
    prefs = get_preferences(context)
    return getattr(prefs, "farm_address", "").strip() if prefs is not None else ""


def export_shots(context, batch_dir: Path) -> list[tuple[str, Path, list[str]]]:
    """One job folder per shot in `batch_dir`: (label, job_dir, warnings). The scene camera and
    the frame range are set for each shot and restored afterwards (also on failure)."""
    scene, settings = context.scene, context.scene.animate_anything
    saved = (scene.camera, settings.use_scene_range, settings.frame_start, settings.frame_end)
    out = []
    try:
        for shot in shots(context):
            if shot.camera is None:
                raise FarmError(
                    f"shot {shot.label} has no camera: bind one to its marker or set the scene camera"
                )
            scene.camera = shot.camera
            settings.use_scene_range = False
            settings.frame_end, settings.frame_start, settings.frame_end = shot.end, shot.start, shot.end
            try:
                job_dir, warnings = export_job(context, batch_dir)
            except Exception as exc:  # the exporter's messages say what to change
                raise FarmError(f"shot {shot.label}: {exc}") from exc
            out.append((shot.label, Path(job_dir), warnings))
    finally:
        scene.camera, settings.use_scene_range = saved[0], saved[1]
        settings.frame_start, settings.frame_end = saved[2], saved[3]
    return out


class FarmRun:
    """One farm submission: the FarmProcess, the shots' labels, what was imported."""

    def __init__(self, scene, batch_dir: Path, labels: dict[Path, str], process: FarmProcess):
        self.scene, self.batch_dir, self.labels, self.process = scene, batch_dir, labels, process
        self.imported: dict[Path, dict] = {}
        self.message = ""
        self.started_at = time.monotonic()
        self.timer = self.tick  # one bound method: Blender matches timers by identity

    @property
    def finished(self) -> bool:
        return self.process.finished

    def tick(self) -> float | None:
        try:
            for event in self.process.poll():
                outcome = self.process.apply(event)
                if outcome is not None and outcome[1] == "done":
                    self._import(outcome[0])
            if self.process.finished:
                self._end()
                return None
        except Exception as exc:  # a timer must not raise: the farm would be left unfollowed
            self.process.kill()
            self.message = f"internal error while following the farm: {exc!r}"
            return None
        finally:
            redraw_areas(("VIEW_3D", "SEQUENCE_EDITOR"))
        return POLL_INTERVAL

    def _import(self, job_dir: Path) -> None:
        state = self.process.jobs[job_dir]
        try:
            self.scene.name  # noqa: B018 - ReferenceError when the scene is gone
            options = result_import.import_options(self.scene)
            summary = result_import.import_result(bpy.context, job_dir, scene=self.scene, **options)
        except (ResultError, ReferenceError) as exc:
            state.end("failed", f"finished but not imported: {exc}")
            return
        self.imported[job_dir] = summary
        state.end("done", result_import.describe(summary))

    def _end(self) -> None:
        result = self.process.result or {}
        for state in self.process.jobs.values():
            if not state.finished:
                state.end("failed", "the farm ended before this job did")
        if result.get("event") == "error":
            self.message = f"{result.get('message', 'the farm failed')}. {result.get('hint', '')}".strip()
        else:
            counts = (self.process.summary or {}).get("counts", {})
            self.message = ", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {self.seconds():.0f} s"

    def seconds(self) -> float:
        return time.monotonic() - self.started_at

    def rows(self) -> list[tuple[str, str, float, str]]:
        """(label, stage or state, fraction, message) per job, for the Output panel."""
        return [(self.labels[d], s.stage, s.fraction, s.message) for d, s in self.process.jobs.items()]

    def cancel(self) -> None:
        self.process.cancel()

    def wait(self) -> None:
        while not self.finished:
            if self.tick() is None:
                break
            time.sleep(0.05)

    def start_timer(self) -> None:
        if not bpy.app.timers.is_registered(self.timer):
            bpy.app.timers.register(self.timer, first_interval=POLL_INTERVAL)


def active_farm() -> FarmRun | None:
    return _active


def is_submitting() -> bool:
    return _active is not None and not _active.finished


def start_farm(context) -> FarmRun:
    """Check, export every shot, start the farm; raises FarmError with nothing started."""
    global _active
    if is_submitting():
        raise FarmError("a farm submission is running: wait for it or cancel it first")
    address = farm_address(context)
    problem = online_problem(address, bool(getattr(bpy.app, "online_access", True)))
    if problem:
        raise FarmError(problem)
    batch_dir = output_folder(context.scene) / time.strftime("farm-%Y%m%d-%H%M%S")
    exported = export_shots(context, batch_dir)
    python = generator_python(context)
    process = FarmProcess(
        batch_dir, [d for _, d, _ in exported], python, address=address, extra_paths=generator_paths(python)
    )
    _active = FarmRun(context.scene, batch_dir, {d.resolve(): label for label, d, _ in exported}, process)
    process.start()
    return _active


def stop_farm() -> None:
    """End a running submission now (the add-on disabled, another file loaded)."""
    if _active is not None and not _active.finished:
        _active.process.kill()
        if bpy.app.timers.is_registered(_active.timer):
            bpy.app.timers.unregister(_active.timer)


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    global _active
    stop_farm()
    _active = None


def register():
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    stop_farm()
