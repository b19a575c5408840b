"""Depth Anything V2 through transformers: planar depth for a picked image.

``DepthAnythingForDepthEstimation`` (transformers; config model_type "depth_anything"), loaded from
a local folder, safetensors only. Preprocessing as DPTImageProcessor does it for these models,
without torchvision: the image resized (bicubic) so that both sides are at least
preprocessor_config.json's size (518 for the released models; "lower_bound" with the aspect kept),
each side rounded to a multiple of `ensure_multiple_of` (14, the ViT patch), scaled to 0..1 and
normalised with image_mean / image_std. The prediction is resized bilinearly to the job size.

Convention of the result: (H, W) float32 planar depth (distance along the camera's z axis) in scene
units, positive and finite everywhere, median = the job's fallback depth. The relative models
(config depth_estimation_type "relative", the default: Depth-Anything-V2-Small/Base/Large-hf)
predict affine-invariant *inverse* depth d >= 0 (large = near). It is made depth as
z = 1 / (d / max(d) + DISPARITY_FLOOR): the nearest pixel at 1 / (1 + floor), zero disparity (the
sky) at 1 / floor, so the farthest content is at most (1 + floor) / floor = 21x the nearest; then z
is scaled so that its median is the fallback depth. The unknown shift of the disparity makes the
ratios approximate: good for parallax order and rough size, not for measurement. Metric models
(depth_estimation_type "metric") predict depth itself; it is only scaled to the same median.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .models import DEPTH_TYPES, ModelUnavailable, check_folder, model_type, preprocessor
from .sam import IMAGENET_MEAN, IMAGENET_STD

# Disparity (share of the image's largest) added before inverting: bounds the far/near ratio.
DISPARITY_FLOOR = 0.05


def load_depth_model(folder: Path, *, device: str = "cpu"):
    """(model in eval mode on `device`, preprocessor settings) from a complete local folder,
    safetensors only. Raises ModelUnavailable (incomplete folder, .bin only, no transformers)."""
    check_folder(folder, DEPTH_TYPES, "Depth Anything V2")
    try:
        import transformers
    except ImportError as exc:
        raise ModelUnavailable("transformers is not installed in the generator environment") from exc
    cls = getattr(transformers, DEPTH_TYPES[model_type(folder)], None)
    if cls is None:
        raise ModelUnavailable(
            f"this transformers ({transformers.__version__}) has no DepthAnythingForDepthEstimation"
        )
    model = cls.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval().to(device)
    return model, preprocessor(folder)


def _input_size(settings: dict, H: int, W: int) -> tuple[int, int]:
    """(h, w) of the network input: both sides >= the configured size, aspect kept, multiples of m."""
    size = settings.get("size") or {}
    th, tw = (
        (int(size.get("height", 518)), int(size.get("width", 518))) if isinstance(size, dict) else (518, 518)
    )
    m = int(settings.get("ensure_multiple_of", 14) or 1)
    if settings.get("keep_aspect_ratio", True):
        s = max(th / H, tw / W)
        th, tw = H * s, W * s
    return max(m, int(round(th / m)) * m), max(m, int(round(tw / m)) * m)


def to_planar_depth(prediction: np.ndarray, median_depth: float, kind: str = "relative") -> np.ndarray:
    """(H, W) float32 depth in scene units from the model's (H, W) output (module docstring)."""
    p = np.nan_to_num(np.asarray(prediction, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if kind == "metric":
        z = np.maximum(p, 1e-6)
    else:
        d = np.maximum(p, 0.0)
        top = d.max()
        z = 1.0 / ((d / top if top > 0 else d) + DISPARITY_FLOOR)
    return (z * (float(median_depth) / float(np.median(z)))).astype(np.float32)


def estimate_depth(
    model, settings: dict, image: np.ndarray, median_depth: float, *, device: str = "cpu"
) -> np.ndarray:
    """(H, W) float32 planar depth of `image` (H, W, 3) uint8 RGB, median `median_depth` scene units."""
    import torch
    from PIL import Image

    H, W = image.shape[:2]
    h, w = _input_size(settings, H, W)
    mean = np.asarray(settings.get("image_mean", IMAGENET_MEAN), np.float32)
    std = np.asarray(settings.get("image_std", IMAGENET_STD), np.float32)
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC), np.float32) / 255.0
    pixels = torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1)[None].copy()).to(device)
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        pred = model(pixel_values=pixels.to(dtype)).predicted_depth.float()  # (1, h', w')
        pred = torch.nn.functional.interpolate(
            pred[:, None], size=(H, W), mode="bilinear", align_corners=False
        )
    kind = getattr(model.config, "depth_estimation_type", "relative") or "relative"
    return to_planar_depth(pred[0, 0].cpu().numpy(), median_depth, kind)
