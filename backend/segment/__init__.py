"""What a drag on a picked image moves, and the image's depth (issue 12).

A rendered reference has an object-identity map; a picked image gets one of the same kind from
``picked_layout(ctx) -> PickedLayout`` (layout.py; the preview calls it): the region under each
drag's start, by SAM 2 (sam.py) or colours and edges (regions.py: OpenCV GrabCut, or numpy +
Pillow), and depth from Depth Anything V2 (depth.py). models.py checks the model folders from their
files alone (stdlib; the doctor uses it). Both models are optional and loaded safetensors-only.

Names are imported lazily, so `backend.segment.models` (and the doctor) needs no numpy.
"""

from __future__ import annotations

__all__ = ["PickedLayout", "picked_layout", "seed_pixels", "assign_ids"]


def __getattr__(name: str):
    if name in __all__:
        from . import layout

        return getattr(layout, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
