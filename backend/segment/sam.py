"""SAM 2 through transformers: the mask under each seed point of a picked image.

transformers (>= 4.56; tested with 5.24) has ``Sam2Model``. Its ``Sam2Processor`` needs
torchvision, which the generator environment does not install, so the preprocessing is done here
as Sam2ImageProcessor does it:
the image resized (no aspect kept) to preprocessor_config.json's size (1024 x 1024 for the released
models), scaled to 0..1, normalised with its image_mean/image_std (ImageNet's by default); point
coordinates scaled by the same factors (SAM adds the half-pixel shift itself). One forward pass
for all seeds (each its own point batch of one positive point), three candidate masks each, the
one with the highest predicted IoU kept; its low-resolution logits resized bilinearly to the job
size and thresholded at 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .models import SEGMENT_EXAMPLE, SEGMENT_TYPES, ModelUnavailable, check_folder, model_type, preprocessor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_sam(folder: Path, *, device: str = "cpu"):
    """(model in eval mode on `device`, preprocessor settings) from a complete local folder,
    safetensors only. Raises ModelUnavailable (incomplete folder, .bin only, no transformers)."""
    check_folder(folder, SEGMENT_TYPES, "SAM 2")
    try:
        import transformers
    except ImportError as exc:
        raise ModelUnavailable("transformers is not installed in the generator environment") from exc
    cls = getattr(transformers, SEGMENT_TYPES[model_type(folder)], None)
    if cls is None:
        raise ModelUnavailable(
            f"this transformers ({transformers.__version__}) has no {SEGMENT_TYPES[model_type(folder)]}: "
            "install transformers >= 4.56"
        )
    model = cls.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval().to(device)
    return model, preprocessor(folder)


def _size(settings: dict, key: str, default: int) -> tuple[int, int]:
    size = settings.get(key) or {}
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, dict) and "longest_edge" in size:
        return int(size["longest_edge"]), int(size["longest_edge"])
    return default, default


def sam_masks(
    model, settings: dict, image: np.ndarray, seeds: np.ndarray, *, device: str = "cpu"
) -> np.ndarray:
    """(n, H, W) bool: the best mask under each seed. image (H, W, 3) uint8 RGB; seeds (n, 2) integer
    pixels (x, y), centres at +0.5. Deterministic (eval mode, no sampling)."""
    import torch
    from PIL import Image

    H, W = image.shape[:2]
    sh, sw = _size(settings, "size", 1024)
    mean = np.asarray(settings.get("image_mean", IMAGENET_MEAN), np.float32)
    std = np.asarray(settings.get("image_std", IMAGENET_STD), np.float32)
    resized = np.asarray(Image.fromarray(image).resize((sw, sh), Image.BILINEAR), np.float32) / 255.0
    pixels = torch.from_numpy(((resized - mean) / std).transpose(2, 0, 1)[None].copy()).to(device)
    # pixel centre (x + 0.5) * scale, less the 0.5 SAM adds back
    scale = np.array([sw / W, sh / H], np.float32)
    points = (np.asarray(seeds, np.float32) + 0.5) * scale - 0.5
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        out = model(
            pixel_values=pixels.to(dtype),
            input_points=torch.from_numpy(points[None, :, None, :]).to(device, dtype),
            input_labels=torch.ones((1, len(points), 1), dtype=torch.long, device=device),
            multimask_output=True,
        )
        logits = out.pred_masks[0].float()  # (n, 3, h, w)
        best = out.iou_scores[0].float().argmax(-1)  # (n,)
        chosen = logits[torch.arange(len(points)), best][:, None]
        full = torch.nn.functional.interpolate(chosen, size=(H, W), mode="bilinear", align_corners=False)
    return (full[:, 0] > 0).cpu().numpy()


__all__ = ["load_sam", "sam_masks", "SEGMENT_EXAMPLE"]
