"""Read the scene's active camera over a frame range: OpenCV extrinsics and pixel intrinsics.

Convention (DESIGN.md):
- c2w (F, 4, 4) float64, OpenCV camera-to-world: camera x right, y down, z forward (Blender's
  camera looks down its local -Z with +Y up, so R_cv = R_blender @ diag(1, -1, -1)); translation in
  scene units; scale and shear of the object's world matrix removed.
- K (F, 3, 3) float64 in pixels, image origin at the top-left corner, pixel centres at i + 0.5 (so
  the principal point of an unshifted camera is (W/2, H/2)).
- Sizes: the *render size* is what Blender renders, `resolution * percentage // 100` in each axis
  (integer, as Blender truncates it). The *job size* (width x height of the job) is reached by the
  centre-crop rule of `blender_animate.camera.rescale_intrinsics`: scale uniformly until the render
  frame covers the job frame, then crop the centre. The reference image goes through the very same
  crop (reference.py), so K always describes reference.png.
- Sampling: `num_frames` samples evenly spaced from frame_start to frame_end inclusive; when the
  counts differ the samples fall on sub-frames (`scene.frame_set(frame, subframe=...)`).

The camera is evaluated (parents, constraints, drivers, delta transforms, animated lens, shift and
sensor all apply) by setting the frame and reading the evaluated object from the depsgraph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Blender camera axes (x right, y up, looking down -z) -> OpenCV (x right, y down, z forward).
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


LENS_TYPES = {"PERSP": "perspective", "ORTHO": "orthographic", "PANO": "panoramic"}


class SceneCameraError(ValueError):
    """The scene's camera cannot be read; the message says what to change."""


@dataclass
class CameraSamples:
    """The camera over the sampled frames. c2w (F,4,4) OpenCV camera-to-world; K (F,3,3) pixels of
    the render size (width x height); times (F,) scene frames (may be fractional)."""

    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    times: np.ndarray
    camera_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sample_times(frame_start: int, frame_end: int, num_frames: int) -> np.ndarray:
    """(num_frames,) float64 scene frames from frame_start to frame_end inclusive, evenly spaced.
    Integer frames exactly when frame_end - frame_start + 1 == num_frames."""
    if num_frames < 2:
        raise SceneCameraError(f"the frame count must be at least 2, got {num_frames}")
    if frame_end <= frame_start:
        raise SceneCameraError(
            f"the frame range {frame_start}-{frame_end} is empty: set the end frame after the start frame"
        )
    i = np.arange(num_frames, dtype=np.float64)
    return frame_start + i * (frame_end - frame_start) / (num_frames - 1)


def render_size(render) -> tuple[int, int]:
    """(width, height) in pixels of what Blender renders: resolution x percentage, truncated."""
    pct = render.resolution_percentage
    return render.resolution_x * pct // 100, render.resolution_y * pct // 100


def camera_intrinsics(cam, render, width: int | None = None, height: int | None = None) -> np.ndarray:
    """K (3,3) float64 in pixels of the render size for camera data `cam` (bpy.types.Camera,
    PERSP), honouring lens, shift, sensor size and fit and the pixel aspect ratio.

    Convention: origin top-left, pixel centres at i + 0.5; u = fx * x/z + cx, v = fy * y/z + cy
    with OpenCV camera coordinates (y down). Non-square pixels give fy = fx * aspect_x / aspect_y.
    """
    if cam.type != "PERSP":
        raise SceneCameraError(
            f"camera '{cam.name}' is {LENS_TYPES.get(cam.type, cam.type.lower())}: only perspective cameras "
            "have a pinhole model; set Camera > Lens > Type to Perspective"
        )
    if width is None or height is None:
        width, height = render_size(render)
    W, H = float(width), float(height)
    pax, pay = render.pixel_aspect_x, render.pixel_aspect_y
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if W * pax >= H * pay else "VERTICAL"
        sensor = cam.sensor_width
    else:
        sensor = cam.sensor_width if fit == "HORIZONTAL" else cam.sensor_height
    view = W if fit == "HORIZONTAL" else H * pay / pax
    fx = cam.lens * view / sensor
    fy = fx * pax / pay
    cx = W / 2.0 - cam.shift_x * view
    cy = H / 2.0 + cam.shift_y * view * pax / pay
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def opencv_c2w(matrix_world) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(c2w (F,4,4) float64 OpenCV, had_shear (F,) bool, mirrored (F,) bool) from Blender object
    world matrices (F,4,4), vectorised over frames. Scale is removed by normalising the columns;
    where they are then not orthogonal (shear from a non-uniformly scaled, rotated parent), the
    nearest rotation (SVD) is used. A mirrored matrix (negative scale) has its x axis flipped back:
    a pinhole camera cannot mirror, so such frames project mirrored left-right against the render."""
    M = np.asarray(matrix_world, dtype=np.float64).reshape(-1, 4, 4)
    A = M[:, :3, :3]
    norms = np.linalg.norm(A, axis=1, keepdims=True)  # (F, 1, 3): column lengths
    if np.any(norms < 1e-12):
        raise SceneCameraError(
            "the camera's world matrix has a zero scale: give the camera (and its parents) scale"
        )
    R = A / norms
    had_shear = np.abs(R.transpose(0, 2, 1) @ R - np.eye(3)).max(axis=(1, 2)) > 1e-6
    if had_shear.any():
        U, _, Vt = np.linalg.svd(A[had_shear])
        R[had_shear] = U @ Vt
    mirrored = np.linalg.det(R) < 0  # a negative scale: keep the camera right-handed
    R[mirrored, :, 0] *= -1
    c2w = np.tile(np.eye(4), (len(M), 1, 1))
    c2w[:, :3, :3] = R @ BLENDER_TO_OPENCV
    c2w[:, :3, 3] = M[:, :3, 3]
    return c2w, had_shear, mirrored


def read_camera(context, frame_start: int, frame_end: int, num_frames: int) -> CameraSamples:
    """Sample the scene's active camera (`context.scene.camera`, following timeline-marker camera
    switches) at `sample_times(frame_start, frame_end, num_frames)`.

    Returns CameraSamples with K at the render size. The scene's current frame is restored.
    Raises SceneCameraError for no camera, a non-camera object as scene camera, orthographic or
    panoramic cameras, or a zero-scale camera.
    """
    scene = context.scene
    if scene.camera is None:
        raise SceneCameraError("the scene has no active camera: add a camera and set it as the scene camera")
    times = sample_times(frame_start, frame_end, num_frames)
    width, height = render_size(scene.render)
    if width < 1 or height < 1:
        raise SceneCameraError("the render resolution is zero: set Output > Resolution")
    world = np.empty((num_frames, 4, 4))
    K = np.empty((num_frames, 3, 3))
    names: list[str] = []
    saved = (scene.frame_current, scene.frame_subframe)
    try:
        for i, t in enumerate(times):
            frame = math.floor(t)
            scene.frame_set(frame, subframe=float(t - frame))
            cam_ob = scene.camera
            if cam_ob is None or cam_ob.type != "CAMERA":
                what = "no camera" if cam_ob is None else f"'{cam_ob.name}', a {cam_ob.type.lower()}"
                raise SceneCameraError(
                    f"at frame {t:g} the scene camera is {what}: set a camera object as the scene camera"
                )
            depsgraph = context.evaluated_depsgraph_get()
            ev = cam_ob.evaluated_get(depsgraph)
            world[i] = ev.matrix_world
            K[i] = camera_intrinsics(ev.data, scene.render, width, height)
            names.append(cam_ob.name)
    finally:
        scene.frame_set(saved[0], subframe=saved[1])
    c2w, sheared, mirrored = opencv_c2w(world)
    warnings = []
    if mirrored.any():
        warnings.append(
            "the camera has a negative scale (it renders mirrored): the video is not mirrored; "
            "give the camera and its parents positive scale to match the render"
        )
    if sheared.any():
        warnings.append(
            "the camera's world matrix is sheared (a rotated parent with non-uniform scale): "
            "the nearest rotation was used"
        )
    switches = sorted(set(names), key=names.index)
    if len(switches) > 1:
        warnings.append(
            f"the active camera changes inside the frame range ({' -> '.join(switches)}, from timeline "
            "markers): the video will cut between them"
        )
    return CameraSamples(c2w, K, width, height, times, names, warnings)


def job_intrinsics(samples: CameraSamples, width: int, height: int) -> np.ndarray:
    """K (F,3,3) rescaled from the render size to the job size by the centre-crop rule of
    blender_animate.camera.rescale_intrinsics (the same crop reference.py applies to the image)."""
    from ...blender_animate.camera import rescale_intrinsics

    return np.asarray(
        rescale_intrinsics(samples.K, (samples.width, samples.height), (width, height)), dtype=np.float64
    )
