"""The reference render as a child process, so that Generate never freezes the UI.

`ReferenceRender(context, frame, width, height, quality=, hide=)` saves a copy of the file as it
is now (`wm.save_as_mainfile(copy=True)`: the artist's file, its path and its dirty state are left
alone) into a temporary folder and starts render_child.py on it in a background Blender, in its own
process group (blender_animate.addon.processes), with an argument list:

- a Blender (`bpy.app.binary_path` set): ``[binary, --background, --factory-startup, COPY.blend,
  --python-exit-code, 1, --python, render_child.py, --, ARGS.json]``;
- the bpy module (`bpy.app.binary_path` is empty there, checked on 4.5, 5.0, 5.2 and 5.3): the
  Python that runs it (`sys.executable`, which imports bpy) with ``[render_child.py, ARGS.json]``.

`poll()` never blocks: it returns None while the child runs, else a `Rendered` (reference.py:
rgb, depth, render_wh, warnings, object_ids, objects, clean_plate_rgb, clean_plate_depth, at the
job size: identity.finish) or raises ReferenceImageError with the child's message. `cancel()`
kills the child's group at once; `close()` removes the temporary folder. The artist's scene is
never touched: the drags (and a clean plate's objects) are hidden in the copy.

`render_for_settings(context, settings)` is the render Generate and Export Job start: the scene's
first frame, quality and drags, and the drag starts that may pick a clean plate (`plate_starts`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import bpy
import numpy as np

from ...blender_animate.addon.processes import new_process_group, stop_group
from . import identity, reference, scene_camera, scene_strokes
from .reference import Rendered as Rendered  # the result of poll(), defined beside the renderer
from .settings import frame_range

CHILD_SCRIPT = Path(__file__).resolve().with_name("render_child.py")


def plate_starts(context, settings) -> np.ndarray:
    """(P, 2) float32 job pixels: the first points of the drags that no closed outline claims
    (scene_strokes.drag_starts), the ones that can pick a clean plate's objects; none when the
    settings' drag regions are Discs. Reads the camera and the strokes as the export does (raises
    their ValueErrors: SceneCameraError, DragSourceError)."""
    if getattr(settings, "drag_regions", "AUTO") == "DISCS" or settings.drag_source == "NONE":
        return np.zeros((0, 2), np.float32)
    start, end = frame_range(context.scene, settings)
    W, H = settings.width, settings.height
    cam = scene_camera.read_camera(context, start, end, settings.num_frames)
    K = scene_camera.job_intrinsics(cam, W, H)
    drags = scene_strokes.read_drags(context, settings, cam.c2w[0], K[0], W, H, cam.times, start, end)
    return scene_strokes.drag_starts(drags)


def render_for_settings(context, settings) -> ReferenceRender:
    """The reference render (not started) for the scene settings: first frame, job size, quality,
    the drags hidden, and the drag starts and object_max_share for the clean plate."""
    start, _ = frame_range(context.scene, settings)
    return ReferenceRender(
        context,
        start,
        settings.width,
        settings.height,
        quality=settings.render_quality,
        hide=reference.drag_objects(context, settings),
        drag_starts=plate_starts(context, settings),
        object_max_share=settings.object_max_share / 100.0,
    )


def render_command(blend: Path, args_json: Path) -> list[str]:
    """The child's argument list (see the module docstring)."""
    binary = bpy.app.binary_path
    if binary and Path(binary).is_file():
        return [
            binary,
            "--background",
            "--factory-startup",
            str(blend),
            "--python-exit-code",
            "1",
            "--python",
            str(CHILD_SCRIPT),
            "--",
            str(args_json),
        ]
    return [sys.executable, str(CHILD_SCRIPT), str(args_json)]


class ReferenceRender:
    """One reference render in a background Blender (see the module docstring)."""

    def __init__(
        self,
        context,
        frame: int,
        width: int,
        height: int,
        *,
        quality="PREVIEW",
        hide=(),
        drag_starts=None,
        object_max_share: float = identity.DEFAULT_OBJECT_MAX_SHARE,
    ):
        """drag_starts: (P, 2) job pixels that may pick clean-plate objects (None: no plate);
        object_max_share: the largest share of the frame an object may cover and still be one."""
        self.scene_name = context.scene.name
        self.width, self.height = width, height
        self.folder = Path(tempfile.mkdtemp(prefix="animate_anything_reference_"))
        self.blend = self.folder / "scene.blend"
        self.args = {
            "blend": str(self.blend),
            "scene": context.scene.name,
            "view_layer": context.view_layer.name,
            "frame": int(frame),
            "width": int(width),
            "height": int(height),
            "quality": quality,
            "hide": [ob.name for ob in hide],
            "folder": str(self.folder),
            "drag_starts": np.asarray(drag_starts if drag_starts is not None else [], np.float64)
            .reshape(-1, 2)
            .tolist(),
            "object_max_share": float(object_max_share),
        }
        self.stage = "render 0/3"
        self.fraction = 0.0
        self.error = ""
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ReferenceRender:
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(self.blend), copy=True, check_existing=False)
        except RuntimeError as exc:
            self.close()
            raise reference.ReferenceImageError(
                f"cannot save a copy of the file for the reference render ({exc}): check the disk space"
            ) from exc
        args_json = self.folder / "args.json"
        args_json.write_text(json.dumps(self.args))
        log = open(self.folder / "render.log", "wb")  # the child writes it; closed here after the start
        try:
            self.proc = subprocess.Popen(
                render_command(self.blend, args_json),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=str(self.folder),
                **new_process_group(),
            )
        finally:
            log.close()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        return self

    def _read(self, stream) -> None:
        try:
            self._read_lines(stream)
        except (OSError, ValueError):  # the pipe was closed by close()
            pass

    def _read_lines(self, stream) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").strip()
            kind, _, payload = line.partition(" ")
            if kind not in ("AA_PROGRESS", "AA_ERROR"):
                continue
            try:
                data = json.loads(payload)
            except ValueError:
                continue
            if kind == "AA_ERROR":
                self.error = str(data.get("message", ""))
            else:
                step, total = int(data.get("step", 0)), max(1, int(data.get("total", 1)))
                self.fraction = step / total
                self.stage = f"render {step}/{total}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> Rendered | None:
        """None while the child runs; then the result, or ReferenceImageError (see the docstring)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        info_path = self.folder / "render.json"
        if self.proc.returncode != 0 or not info_path.is_file():
            message = (
                self.error or self._log_tail() or f"the render process ended with {self.proc.returncode}"
            )
            raise reference.ReferenceImageError(message)
        info = json.loads(info_path.read_text())
        rgb = reference._read_png(self.folder / info["color"])
        depth = np.load(self.folder / info["depth"])
        ids = np.load(self.folder / info["ids"])
        plate_rgb = plate_depth = None
        if "plate_color" in info:
            plate_rgb = reference._read_png(self.folder / info["plate_color"])
            plate_depth = np.load(self.folder / info["plate_depth"])
        return identity.finish(
            rgb,
            depth,
            ids,
            {int(i): name for i, name in info["objects"].items()},
            info["clip_end"],
            self.width,
            self.height,
            info["warnings"],
            plate_ids=info["plate_ids"],
            plate_rgb=plate_rgb,
            plate_depth=plate_depth,
        )

    def wait(self, timeout: float | None = None) -> Rendered:
        """Block until the child ends (background mode, scripts)."""
        self.proc.wait(timeout=timeout)
        return self.poll()

    def _log_tail(self) -> str:
        try:
            lines = (self.folder / "render.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"the reference render failed: {lines[-1]}" if lines else ""

    def cancel(self) -> None:
        """Kill the child's process group now (nothing it made is used)."""
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc, 0)

    def close(self) -> None:
        self.cancel()
        if self.proc is not None and self.proc.poll() is not None:
            if self._reader is not None:
                self._reader.join(timeout=2.0)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)
