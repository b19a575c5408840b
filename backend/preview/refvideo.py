"""Motion from a reference video: DIS optical flow (OpenCV), chained to frame 0, at the job's size.

Steps: read the first `num_frames` frames (cv2.VideoCapture, FFmpeg backend), centre-crop each to
the job's aspect ratio and resize it to width x height (the same centre-crop rule as the
cameras' intrinsics), compute DIS flow between consecutive greyscale frames, and chain:
    F_0->f(p) = F_0->f-1(p) + F_f-1->f(p + F_0->f-1(p))
sampling the pair flow bilinearly (cv2.remap, border replicated). Result: forward flow of frame
0's pixels to frame f, (F, H, W, 2) float32 pixels, flow[0] == 0 (the module convention of
blender_animate.flow). A video shorter than the job holds its last position (a warning says so).
OpenCV is required: without it the job is refused with a missing_dependency message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import JobFailure

NO_OPENCV_HINT = (
    "A reference video needs OpenCV for its optical flow. Set the generator's Python in Preferences > "
    "Add-ons > Animate Anything to the generator environment (Create Generator Environment there, "
    "which installs backend/requirements-generator.txt from the extension folder, or just `pip install "
    "opencv-python-headless`), or remove the reference video."
)


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise JobFailure(
            "missing_dependency",
            "this Python has no OpenCV (cv2), which a reference video needs",
            NO_OPENCV_HINT,
        ) from exc
    return cv2


def crop_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop (H0, W0, C) to the aspect width:height, then resize to (height, width, C)."""
    cv2 = _cv2()
    h0, w0 = frame.shape[:2]
    if w0 * height > h0 * width:  # too wide: crop the sides
        cw = max(1, round(h0 * width / height))
        x = (w0 - cw) // 2
        frame = frame[:, x : x + cw]
    elif w0 * height < h0 * width:  # too tall: crop top and bottom
        ch = max(1, round(w0 * height / width))
        y = (h0 - ch) // 2
        frame = frame[y : y + ch]
    if frame.shape[:2] == (height, width):
        return np.ascontiguousarray(frame)
    shrink = frame.shape[0] > height
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def probe(path: Path) -> None:
    """Check before the run starts that the reference video opens and has 2 decodable frames;
    raise JobFailure ("invalid_job", or "missing_dependency" without OpenCV) otherwise."""
    read_frames(path, 2, 16, 16)


def read_frames(path: Path, num_frames: int, height: int, width: int) -> np.ndarray:
    """The first `num_frames` frames (fewer if the video is shorter) as (N, H, W) uint8 grey."""
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise JobFailure(
            "invalid_job",
            f"the reference video {path} cannot be read",
            "Use a video FFmpeg reads (mp4/mov/webm/avi) or remove the reference video.",
        )
    frames = []
    try:
        while len(frames) < num_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            frames.append(crop_resize(grey, height, width))
    finally:
        cap.release()
    if len(frames) < 2:
        raise JobFailure(
            "invalid_job",
            f"the reference video {path} has {len(frames)} readable frame(s); its motion needs at least 2",
            "Choose a longer reference video or remove it.",
        )
    return np.stack(frames)


def chain_flows(pair_flows: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Chain consecutive flows (each (H, W, 2), frame k -> k+1) into flows from frame 0:
    (len + 1, H, W, 2) float32 with [0] == 0."""
    cv2 = _cv2()
    out = np.zeros((len(pair_flows) + 1, height, width, 2), np.float32)
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    for k, pair in enumerate(pair_flows):
        acc = out[k]
        moved = cv2.remap(
            np.ascontiguousarray(pair, np.float32),
            gx + acc[..., 0],
            gy + acc[..., 1],
            interpolation=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out[k + 1] = acc + moved
    return out


def reference_flow(
    path: Path,
    num_frames: int,
    height: int,
    width: int,
    *,
    check_cancel=None,
    warn=None,
    preset: str = "medium",
) -> tuple[np.ndarray, dict]:
    """Forward flow (num_frames, H, W, 2) float32 of the reference video's frame 0, and facts for
    result.json. preset: DIS preset "ultrafast", "fast" or "medium" (~25 ms a pair at 720x480)."""
    cv2 = _cv2()
    presets = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    grey = read_frames(Path(path), num_frames, height, width)
    dis = cv2.DISOpticalFlow_create(presets[preset])
    pairs = []
    for k in range(len(grey) - 1):
        if check_cancel is not None:
            check_cancel()
        pairs.append(dis.calc(grey[k], grey[k + 1], None))
    flow = chain_flows(pairs, height, width)
    if len(grey) < num_frames:
        if warn is not None:
            warn(
                f"the reference video has {len(grey)} frames, fewer than the job's {num_frames}: "
                "its motion holds still after its last frame"
            )
        flow = np.concatenate([flow, np.repeat(flow[-1:], num_frames - len(grey), axis=0)])
    info = {"frames_used": int(len(grey)), "method": f"DIS {preset}, chained to frame 0"}
    return flow, info
