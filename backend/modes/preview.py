"""Mode `preview`: the reference image moved along the unified flow (no model, CPU, seconds).

1. Unified flow of frame 0's pixels (camera from depth or the fallback plane, drags, regions):
   blender_animate.flow.unified_flow, with region masks first cut to the depth of the drags inside
   them (backend.preview.regions: the background inside an outline does not move).
2. Optional reference video: its DIS flow (OpenCV), chained to frame 0, added to the flow.
3. Per frame, on a few threads: softmax forward splatting of the reference image with depth
   order and footprints for magnified surfaces (backend.preview.splat), then depth-aware hole
   filling from the background (backend.preview.fill).
Needs numpy and Pillow only; scipy makes the splatting faster, OpenCV enables reference videos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from blender_animate.flow import REGION_FEATHER, unified_flow

from ..context import JobContext
from ..errors import JobFailure
from ..parallel import map_ordered
from ..preview.fill import fill_holes, resolve_method
from ..preview.regions import depth_gated_regions
from ..preview.splat import DEPTH_SHARPNESS, forward_splat
from . import ModeResult

# Hole filler ("auto": the depth-aware "background" fill, which fills disocclusions from the
# background where Telea smears the foreground into them, and is faster); override with
# ANIMATE_ANYTHING_FILL=background|pushpull|telea.
DEFAULT_FILL = "auto"


@dataclass
class PreviewFlow:
    """Stage 1 of the preview: flow (F, H, W, 2) float32 pixels of frame 0's pixels, their depth
    in each frame (F, H, W) float32 (inf far, <= 0 behind the camera), the rim (H, W) bool of cut
    drag outlines left to the filler (or None), and facts for result.json."""

    flow: np.ndarray
    depth: np.ndarray
    rim: np.ndarray | None
    info: dict


def preview_flow(ctx: JobContext) -> PreviewFlow:
    """Steps 1 and 2 of the module docstring; also stage 1 of the model modes when they have none."""
    spec, cond = ctx.spec, ctx.cond
    F, H, W = spec.num_frames, spec.height, spec.width

    # 1. Unified flow.
    ctx.progress("flow", 0, 1, "computing the camera and drag flow")
    masks, feather, rim = None, REGION_FEATHER, None
    if cond.region_masks.shape[0]:
        # Background enclosed by a drag's outline stays put; the cut follows depth edges, so it
        # needs no feather, and the object's rim is left to the filler (backend.preview.regions).
        gr = depth_gated_regions(cond.region_masks, ctx.depth, cond.tracks)
        masks, rim = gr.masks, gr.rim
        feather = 0 if gr.hard_edge else REGION_FEATHER
    uf = unified_flow(
        ctx.depth,
        cond.K,
        cond.c2w,
        cond.tracks,
        cond.track_visible,
        cond.track_radius,
        masks,
        fallback_depth=spec.fallback_depth,
        height=H,
        width=W,
        region_feather=feather,
    )
    for message in uf.warnings:
        ctx.warn(message)
    flow = uf.flow
    info: dict = {"depth": "depth.npy" if ctx.depth is not None else "fallback plane"}
    if masks is not None:
        info["region_pixels_left_behind"] = gr.removed
    ctx.progress("flow", 1, 1, "flow ready")

    # 2. Reference video motion.
    if spec.reference_video:
        from ..preview.refvideo import reference_flow

        ctx.progress("reference_video", 0, 1, "optical flow of the reference video")
        ref, ref_info = reference_flow(
            ctx.job_dir / spec.reference_video, F, H, W, check_cancel=ctx.check_cancel, warn=ctx.warn
        )
        flow += ref
        info["reference_video"] = ref_info
        ctx.progress("reference_video", 1, 1, "reference video motion added")
    return PreviewFlow(flow, uf.depth, rim, info)


def generate(ctx: JobContext) -> ModeResult:
    """The preview of the job in `ctx`: frames (F, H, W, 3) uint8 (frame 0 is the reference
    itself), the flow used (F, H, W, 2) float32 pixels, and facts for result.json."""
    spec = ctx.spec
    F, H, W = spec.num_frames, spec.height, spec.width
    stage1 = preview_flow(ctx)
    flow, depth, rim, info = stage1.flow, stage1.depth, stage1.rim, stage1.info

    # 3. Splat and fill every frame.
    try:
        method = resolve_method(os.environ.get("ANIMATE_ANYTHING_FILL", DEFAULT_FILL), have_depth=True)
    except ValueError as exc:
        raise JobFailure(
            "invalid_job", f"ANIMATE_ANYTHING_FILL: {exc}", "Unset it or pick a listed filler."
        ) from exc
    image = ctx.reference
    frames = np.empty((F, H, W, 3), np.uint8)
    frames[0] = image
    holes = np.zeros(F, np.float64)

    def render(f: int) -> tuple[np.ndarray, float]:
        if f == 0:
            return image, 0.0
        front = depth[f] > 0  # behind the camera: dropped
        if rim is not None:
            front &= ~rim
        s = forward_splat(image, flow[f], depth[f], front, want_depth=method == "background")
        return fill_holes(s.image, s.hole, depth=s.depth, method=method), float(s.hole.mean())

    for f, (frame, hole) in enumerate(map_ordered(render, F, ctx.workers, ctx.check_cancel)):
        frames[f] = frame
        holes[f] = hole
        if f % max(1, F // 8) == 0 or f == F - 1:
            ctx.progress("render", f + 1, F, "splatting and filling frames")
    info.update(
        splat=f"softmax forward splatting, depth sharpness {DEPTH_SHARPNESS:g}",
        fill=method,
        hole_fraction_mean=round(float(holes.mean()), 4),
        hole_fraction_max=round(float(holes.max()), 4),
    )
    return ModeResult(frames, flow, info)
