"""Training data of AnimateAnything: one folder per clip (format in docs/animateanything.md, "Training data").

::

    DATA/
      clip_0001/
        frames/000000.png 000001.png ...   the clip's frames (sorted by name), or
        video.mp4                          (needs OpenCV; read up to the last sampled frame)
        cameras.txt                        RealEstate10K camera file, one line per frame
        flow.npz                           ground-truth flow from frame 0 to every frame
                                           (blender_animate.flowviz.save_flow: (N, H, W, 2) pixels)
        tracks.npz                         optional: "tracks" (P, N, 2) pixels, "visible" (P, N) bool
                                           (screen tracks, as a point tracker gives them)
        prompt.txt                         optional caption (stage 2's text), "" when absent

:class:`ClipDataset` samples F frames of a clip starting at frame 0 (the flow is relative to it)
with a random stride, centre-crops every map to the training aspect and resizes it to the training
size (intrinsics: a shift, then ``rescale_intrinsics(mode="stretch")``; flow: the same crop, then
``flowviz.resize_flow``), computes Plücker embeddings (``blender_animate.plucker``) and the sparse
flow of the explicit path (``blender_animate.flow.sparse_flow``) from given tracks or from tracks
sampled from the ground-truth flow. Nothing is ever unpickled (npz files are read with
``allow_pickle=False``).

Tracks here are SCREEN tracks, the model-input side of the project's track convention
(blender_animate/track_space.py, docs/interfaces.md "Track convention"): a track's position in
frame f is where its point is seen in frame f's image, camera motion included (``flow_tracks``:
``start + flow[f]`` of the ground-truth flow). Jobs hold object motion in frame-0 image space
instead; the model modes convert them with ``track_space.screen_tracks`` before stage 1, and
``track_space.object_tracks`` expresses a clip's screen tracks as a job's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

FRAMES_DIR = "frames"
VIDEO_FILE = "video.mp4"
CAMERA_FILE = "cameras.txt"
FLOW_FILE = "flow.npz"
TRACKS_FILE = "tracks.npz"
PROMPT_FILE = "prompt.txt"
IMAGE_SUFFIXES = (".png",)


class DatasetError(ValueError):
    """A clip folder is missing something or holds something unreadable; the message names the clip."""


def find_clips(root) -> list[Path]:
    """Sorted clip folders under ``root`` (every subfolder holding ``frames/`` or ``video.mp4``).

    Raises :class:`DatasetError` when there are none, or when a clip lacks its camera or flow file."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"the training data folder {root} does not exist")
    clips = sorted(
        p for p in root.iterdir() if p.is_dir() and ((p / FRAMES_DIR).is_dir() or (p / VIDEO_FILE).is_file())
    )
    if not clips:
        raise DatasetError(
            f"{root} holds no clip folders (a clip is a folder with {FRAMES_DIR}/ or {VIDEO_FILE}, "
            f"{CAMERA_FILE} and {FLOW_FILE}; see docs/animateanything.md, 'Training data')"
        )
    problems = []
    for clip in clips:
        if not (clip / CAMERA_FILE).is_file():
            problems.append(f"clip {clip.name}: missing {CAMERA_FILE} (the RealEstate10K camera file)")
        if not (clip / FLOW_FILE).is_file():
            problems.append(
                f"clip {clip.name}: missing {FLOW_FILE} (ground-truth flow from frame 0, save_flow)"
            )
    if problems:
        raise DatasetError(f"training data {root}:\n  - " + "\n  - ".join(problems))
    return clips


def center_crop_box(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): the largest centred integer box of the output's aspect ratio."""
    if width * out_height > height * out_width:  # wider than the target: crop the sides
        h = height
        w = max(1, min(width, int(round(height * out_width / out_height))))
    else:
        w = width
        h = max(1, min(height, int(round(width * out_height / out_width))))
    return (width - w) // 2, (height - h) // 2, w, h


class ClipDataset(torch.utils.data.Dataset):
    """Clips of F frames at ``height`` x ``width`` for either stage.

    Args:
        root: the data folder (one subfolder per clip).
        num_frames: F, frames per sample (4k + 1 for CogVideoX).
        height, width: training size (stage 2: the video size; stage 1: the flow size).
        max_stride: frames are ``0, s, 2s, ...`` with s uniform in
            [1, max_stride] (capped by the clip's length).
        num_tracks: sparse tracks per sample, uniform in [0, num_tracks] (0: camera only).
        plucker: compute the (F, 6, H, W) Plücker embedding (stage 1).

    Each item is a dict: ``frames`` (F, 3, H, W) float32 in [-1, 1]; ``flow`` (F, H, W, 2) pixels, frame
    0 zero; ``c2w`` (F, 4, 4) OpenCV camera-to-world and ``K`` (F, 3, 3) pixels at the training size;
    ``plucker`` (F, 6, H, W) when asked; ``sparse_flow`` (F, H, W, 2) and ``sparse_mask`` (F, H, W);
    ``prompt`` and ``clip`` (strings). Errors are :class:`DatasetError` naming the clip.
    """

    def __init__(
        self,
        root,
        num_frames: int,
        height: int,
        width: int,
        *,
        max_stride: int = 1,
        num_tracks: int = 8,
        plucker: bool = True,
    ):
        if num_frames < 2:
            raise ValueError(f"num_frames must be at least 2, got {num_frames}")
        self.root = Path(root)
        self.clips = find_clips(self.root)
        self.num_frames = int(num_frames)
        self.height = int(height)
        self.width = int(width)
        self.max_stride = max(1, int(max_stride))
        self.num_tracks = max(0, int(num_tracks))
        self.plucker = bool(plucker)

    def __len__(self) -> int:
        return len(self.clips)

    def prompts(self) -> list[str]:
        """The caption of every clip, in order ("" where there is no prompt.txt)."""
        return [read_prompt(clip) for clip in self.clips]

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        # Seeded from torch's generator: reproducible under torch.manual_seed and per DataLoader worker.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        try:
            return self._load(clip, rng)
        except DatasetError:
            raise
        except Exception as exc:  # CameraError, ValueError from load_flow, OSError from images
            raise DatasetError(f"clip {clip.name} ({clip}): {exc}") from exc

    # ------------------------------------------------------------------ loading
    def stride_choices(self, num_clip_frames: int) -> int:
        """The largest frame stride a sample of this clip may use (strides are 1..this)."""
        return max(1, min(self.max_stride, (num_clip_frames - 1) // (self.num_frames - 1)))

    def _load(self, clip: Path, rng: np.random.Generator, stride: int | None = None) -> dict:
        from blender_animate.camera import read_realestate10k, rescale_intrinsics
        from blender_animate.flow import sparse_flow
        from blender_animate.flowviz import load_flow, resize_flow
        from blender_animate.plucker import plucker_embedding

        F, H, W = self.num_frames, self.height, self.width
        flow_all = load_flow(clip / FLOW_FILE)
        n = flow_all.shape[0]
        pngs = frame_files(clip)
        if pngs is not None and len(pngs) != n:
            raise DatasetError(
                f"clip {clip.name}: {len(pngs)} frames in {FRAMES_DIR}/ but {n} in {FLOW_FILE}"
            )
        if n < F:
            raise DatasetError(f"clip {clip.name} has {n} frames; a sample needs {F}")
        if stride is None:  # the draw latent_cache.CachedClips repeats
            stride = int(rng.integers(1, min(self.max_stride, (n - 1) // (F - 1)) + 1))
        idx = np.arange(F) * stride
        frames = read_png_frames(pngs, idx) if pngs is not None else read_video_frames(clip / VIDEO_FILE, idx)
        if frames.shape[0] != F:
            raise DatasetError(f"clip {clip.name}: {VIDEO_FILE} has fewer frames than {FLOW_FILE} ({n})")
        sh, sw = frames.shape[1:3]
        track = read_realestate10k(clip / CAMERA_FILE, width=sw, height=sh)
        if track.num_frames != n:
            raise DatasetError(
                f"clip {clip.name}: {CAMERA_FILE} has {track.num_frames} cameras for {n} frames"
            )

        # Crop to the training aspect (integer box), then stretch to the training size: images, flow,
        # intrinsics and tracks all follow the same map u' = (u - x0) * W / w.
        x0, y0, cw, ch = center_crop_box(sw, sh, W, H)
        frames = np.stack(
            [
                np.asarray(Image.fromarray(f[y0 : y0 + ch, x0 : x0 + cw]).resize((W, H), Image.BICUBIC))
                for f in frames
            ]
        )
        flow = flow_all[idx]
        if flow.shape[1:3] != (sh, sw):  # flow computed at another resolution: to the frames' size first
            flow = resize_flow(flow, sh, sw)
        flow = resize_flow(flow[:, y0 : y0 + ch, x0 : x0 + cw], H, W)
        flow[0] = 0.0
        K = track.K[idx].copy()
        K[:, 0, 2] -= x0
        K[:, 1, 2] -= y0
        K = rescale_intrinsics(K, (cw, ch), (W, H), mode="stretch")
        c2w = track.c2w[idx]

        # Explicit path: given tracks (mapped like the images) or tracks sampled from the GT flow.
        count = int(rng.integers(0, self.num_tracks + 1)) if self.num_tracks else 0
        tracks, visible = self._tracks(clip, idx, (x0, y0, cw, ch), flow, count, rng)
        if len(tracks):
            sflow, smask = sparse_flow(tracks, visible, H, W)
        else:
            sflow, smask = np.zeros((F, H, W, 2), np.float32), np.zeros((F, H, W), bool)

        item = {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0,
            "flow": torch.from_numpy(np.ascontiguousarray(flow, np.float32)),
            "c2w": torch.from_numpy(c2w.astype(np.float32)),
            "K": torch.from_numpy(K.astype(np.float32)),
            "sparse_flow": torch.from_numpy(sflow),
            "sparse_mask": torch.from_numpy(smask.astype(np.float32)),
            "prompt": read_prompt(clip),
            "clip": clip.name,
        }
        if self.plucker:
            item["plucker"] = torch.from_numpy(plucker_embedding(c2w, K, H, W))
        return item

    def _tracks(self, clip, idx, box, flow, count, rng) -> tuple[np.ndarray, np.ndarray]:
        F, H, W = flow.shape[:3]
        if count == 0:
            return np.zeros((0, F, 2), np.float32), np.zeros((0, F), bool)
        path = clip / TRACKS_FILE
        if path.is_file():
            tracks, visible = read_tracks(path)
            if tracks.shape[1] <= idx[-1]:
                raise DatasetError(
                    f"clip {clip.name}: {TRACKS_FILE} has {tracks.shape[1]} frames, need {idx[-1] + 1}"
                )
            x0, y0, cw, ch = box
            scale = np.array([W / cw, H / ch], np.float32)
            tracks = (tracks[:, idx] - np.array([x0, y0], np.float32)) * scale
            visible = visible[:, idx]
            keep = np.flatnonzero(visible[:, 0])  # a track must be seen in frame 0 (its start pixel)
            pick = rng.choice(keep, size=min(count, len(keep)), replace=False) if len(keep) else keep
            return tracks[pick], visible[pick]
        # Sampled from the ground-truth flow: start at random pixel centres, follow the flow.
        ys = rng.integers(0, H, count)
        xs = rng.integers(0, W, count)
        tracks = flow_tracks(flow, xs, ys)
        return tracks, np.ones(tracks.shape[:2], bool)


def flow_tracks(flow: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Screen tracks (P, F, 2) float32 pixels of the frame-0 pixels (xs, ys) (P,) integer columns and
    rows, carried by the forward flow (F, H, W, 2): ``(x + 0.5, y + 0.5) + flow[f, y, x]`` (pixel
    centres, the module docstring's convention: positions seen in frame f, camera motion included)."""
    xs, ys = np.asarray(xs, np.int64), np.asarray(ys, np.int64)
    start = np.stack([xs + 0.5, ys + 0.5], axis=-1).astype(np.float32)  # (P, 2)
    return (start[:, None, :] + flow[:, ys, xs].transpose(1, 0, 2)).astype(np.float32)  # (P, F, 2)


# ---------------------------------------------------------------------- readers


def read_prompt(clip: Path) -> str:
    path = Path(clip) / PROMPT_FILE
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def frame_files(clip: Path) -> list[Path] | None:
    """The PNG frames of a clip, sorted by name; None when it has a video instead."""
    folder = Path(clip) / FRAMES_DIR
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"clip {Path(clip).name}: {FRAMES_DIR}/ holds no PNG frames")
    return files


def read_png_frames(files: list[Path], idx: np.ndarray) -> np.ndarray:
    frames = []
    for i in idx:
        with Image.open(files[int(i)]) as im:
            frames.append(np.asarray(im.convert("RGB")))
    if len({f.shape for f in frames}) != 1:
        raise DatasetError(f"frames of {files[0].parent.parent.name} differ in size")
    return np.stack(frames)


def read_video_frames(path: Path, idx: np.ndarray) -> np.ndarray:
    """Frames ``idx`` (sorted) of a video as (F, H, W, 3) uint8 RGB, decoded with OpenCV."""
    try:
        import cv2
    except ModuleNotFoundError as exc:
        raise DatasetError(
            f"clip {path.parent.name}: reading {VIDEO_FILE} needs OpenCV (opencv-python-headless); "
            f"or store the frames as {FRAMES_DIR}/*.png"
        ) from exc
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetError(f"clip {path.parent.name}: {path} cannot be read")
    wanted, out, i = set(int(j) for j in idx), [], 0
    try:
        while i <= int(idx[-1]):
            ok, bgr = cap.read()
            if not ok:
                break
            if i in wanted:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            i += 1
    finally:
        cap.release()
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def read_tracks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``tracks`` (P, N, 2) float32 pixels and ``visible`` (P, N) bool (all True when absent), no pickles."""
    with np.load(path, allow_pickle=False) as z:
        if "tracks" not in z.files:
            raise DatasetError(f"{path} has no 'tracks' array")
        tracks = np.asarray(z["tracks"], np.float32)
        visible = np.asarray(z["visible"], bool) if "visible" in z.files else np.ones(tracks.shape[:2], bool)
    if tracks.ndim != 3 or tracks.shape[2] != 2 or visible.shape != tracks.shape[:2]:
        raise DatasetError(
            f"{path}: tracks must be (P, N, 2) and visible (P, N), got {tracks.shape}, {visible.shape}"
        )
    if not np.isfinite(tracks).all():
        raise DatasetError(f"{path}: tracks hold NaN or infinite values")
    return tracks, visible


def collate(items: list[dict]) -> dict:
    """Stack tensors, list strings."""
    out = {}
    for key in items[0]:
        values = [item[key] for item in items]
        out[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return out
