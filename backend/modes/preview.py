"""Mode `preview`: the reference image moved along the unified flow (no model, CPU, seconds).

1. Unified flow of frame 0's pixels (camera from depth or the fallback plane, drags, regions):
   blender_animate.flow.unified_flow, with region masks first cut to the depth of the drags inside
   them (backend.preview.regions: the background inside an outline does not move). A drag on an
   object moves the whole object (blender_animate.drags: conditions.npz object_ids from the
   object-identity pass, or for a picked image the regions backend.segment finds in it).
2. Optional reference video: its DIS flow (OpenCV), chained to frame 0, added to the flow.
3. Per frame, on a few threads: softmax forward splatting of the reference image with depth
   order and footprints for magnified surfaces (backend.preview.splat), then depth-aware hole
   filling from the background (backend.preview.fill). With a clean plate (the scene rendered
   without the dragged objects) what they uncover is the plate itself, splatted with the camera's
   motion, before anything is filled.
`generate` streams: each frame's flow (step 1 for that frame alone: unified_flow of frames 0 and
f, the same numbers as the whole-video call), splat and fill are made when the runner asks for the
frame and let go once it is written, so memory does not grow with the frame count (only the
reference video's flow, when there is one, is held whole). `preview_flow` is stage 1 whole, for
the model modes. Needs numpy and Pillow only; scipy makes the splatting faster, OpenCV enables
reference videos.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from blender_animate.drags import DragField, drag_field
from blender_animate.flow import REGION_FEATHER, camera_flow, inverse_depth, unified_flow

from ..context import JobContext
from ..errors import JobFailure
from ..preview.budget import HEAP_BYTES_PER_PIXEL, frame_threads
from ..preview.fill import fill_holes, resolve_method
from ..preview.regions import REGION_RIM, depth_gated_regions, grow
from ..preview.splat import DEPTH_SHARPNESS, compiled_kernel, forward_splat
from . import FrameStream, ModeResult

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


@dataclass
class FlowPlan:
    """What stage 1 needs for any one frame, computed once: the region masks (R, H, W) bool or
    None and their feather, the rim (as in PreviewFlow), the reference video's flow (F, H, W, 2)
    float32 or None, and facts for result.json."""

    masks: np.ndarray | None
    feather: int
    rim: np.ndarray | None
    reference: np.ndarray | None
    info: dict
    drags: DragField | None = None
    plate: CleanPlate | None = None
    inverse: np.ndarray | None = None  # inverse_depth(ctx.depth), or None without a depth map


@dataclass
class CleanPlate:
    """Frame 0 without the dragged objects: image (H, W, 3) uint8, depth (H, W) float32 planar
    (inf far), sources (H, W) bool: the pixels it gives the video (where those objects were, and
    their rim); inverse: inverse_depth(depth), once for all frames."""

    image: np.ndarray
    depth: np.ndarray
    sources: np.ndarray
    inverse: np.ndarray


def flow_plan(ctx: JobContext, *, reference: bool = True) -> FlowPlan:
    """Everything of steps 1 and 2 that does not depend on the frame (progress stages `flow` and,
    with `reference`, `reference_video`; the unified flow's warnings are reported here, once).
    reference=False leaves the reference video to the caller (add_reference_motion) and the
    `flow` stage open (its step 1 of 1 is the caller's)."""
    spec, cond = ctx.spec, ctx.cond
    F = spec.num_frames
    ctx.progress("flow", 0, 1, "computing the camera and drag flow")
    masks, feather, rim = None, REGION_FEATHER, None
    info: dict = {"depth": "depth.npy" if ctx.depth is not None else "fallback plane"}
    if cond.region_masks.shape[0]:
        # Background enclosed by a drag's outline stays put; the cut follows depth edges, so it
        # needs no feather, and the object's rim is left to the filler (backend.preview.regions).
        gr = depth_gated_regions(cond.region_masks, ctx.depth, cond.tracks)
        masks, rim = gr.masks, gr.rim
        feather = 0 if gr.hard_edge else REGION_FEATHER
        info["region_pixels_left_behind"] = gr.removed
    object_ids = _object_ids(ctx, info)
    drags = drag_field(
        cond.tracks,
        cond.track_radius,
        masks,
        spec.height,
        spec.width,
        region_feather=feather,
        object_ids=object_ids,
        object_max_share=spec.object_max_share,
        object_names=spec.object_name,
    )
    for message in drags.warnings:
        ctx.warn(message)
    info["drags"] = [
        {
            "drags": m["drags"],
            "moves": m["name"],
            "kind": m["kind"],
            "fit": m["fit"],
            "residual_px": m["residual_px"],
        }
        for m in drags.movers
    ]
    moved = [m["object_id"] for m in drags.movers if m["kind"] == "object"]
    plate = None
    if moved:
        # The objects' anti-aliased rim (their colour over the background) would stay behind as a
        # ghost outline: left to the clean plate or the filler, as for cut outlines.
        objects = np.isin(object_ids, moved)
        moving = np.zeros(spec.height * spec.width, bool)
        moving[drags.support] = True
        ring = grow(objects, REGION_RIM) & ~moving.reshape(objects.shape)
        rim = ring if rim is None else rim | ring
        plate = _clean_plate(ctx, object_ids, moved, info)
    inverse = None if ctx.depth is None else inverse_depth(ctx.depth)
    plan = FlowPlan(masks, feather, rim, None, info, drags, plate, inverse)
    for message in _unified(ctx, plan, [0, min(1, F - 1)]).warnings:
        ctx.warn(message)
    if reference:
        ctx.progress("flow", 1, 1, "flow ready")
        add_reference_motion(ctx, plan)
    return plan


def _object_ids(ctx: JobContext, info: dict) -> np.ndarray | None:
    """The object map the drags pick from: conditions.npz object_ids (rendered references), the
    regions segmented from a picked image (backend.segment, which may also estimate its depth
    into ctx.depth; both are kept in ctx), or None (drag_regions "discs", or nothing to pick)."""
    spec, cond = ctx.spec, ctx.cond
    if cond.object_ids.any():
        return cond.object_ids if spec.drag_regions == "auto" and len(cond.tracks) else None
    if spec.reference_source != "file":
        return None
    from ..segment import picked_layout

    layout = picked_layout(ctx)  # does nothing without drags to segment or a depth model
    for message in layout.warnings:
        ctx.warn(message)
    if layout.info:
        info["picked_image"] = layout.info
    if layout.depth is not None and ctx.depth is None:
        ctx.depth = layout.depth
        info["depth"] = "estimated from the image (depth_model)"
    if layout.object_ids is not None:  # kept, so that a second flow_plan (Wan-Move) reuses it
        spec.objects = {**layout.objects, **spec.objects}
        cond.object_ids = layout.object_ids
    return layout.object_ids


def _clean_plate(ctx: JobContext, object_ids: np.ndarray, moved: list[int], info: dict) -> CleanPlate | None:
    """The job's clean plate restricted to the moved objects it was rendered without, or None."""
    from blender_animate import job as jobio

    from ..context import read_reference

    spec = ctx.spec
    hidden = [oid for oid in moved if not spec.objects.get(str(oid), {}).get("in_clean_plate", True)]
    if not spec.clean_plate or not hidden:
        return None
    image = read_reference(ctx.job_dir / jobio.CLEAN_PLATE_PNG, spec.width, spec.height)
    depth = jobio.load_depth(ctx.job_dir, jobio.CLEAN_PLATE_DEPTH_NPY)
    sources = grow(np.isin(object_ids, hidden), REGION_RIM + 1)
    info["clean_plate"] = [spec.object_name(oid) for oid in hidden]
    return CleanPlate(image, depth, sources, inverse_depth(depth))


def add_reference_motion(ctx: JobContext, plan: FlowPlan) -> None:
    """Step 2: the reference video's flow (F, H, W, 2) into plan.reference, when the job has one."""
    spec = ctx.spec
    if not spec.reference_video:
        return
    from ..preview.refvideo import reference_flow

    ctx.progress("reference_video", 0, 1, "optical flow of the reference video")
    plan.reference, plan.info["reference_video"] = reference_flow(
        ctx.job_dir / spec.reference_video,
        spec.num_frames,
        spec.height,
        spec.width,
        check_cancel=ctx.check_cancel,
        warn=ctx.warn,
    )
    ctx.progress("reference_video", 1, 1, "reference video motion added")


def _unified(ctx: JobContext, plan: FlowPlan, frames):
    """blender_animate.flow.unified_flow of the job for the frame indices `frames` only (the
    flow of each frame depends on that frame's camera and drag positions and on frame 0's alone)."""
    spec, cond = ctx.spec, ctx.cond
    return unified_flow(
        ctx.depth,
        cond.K[frames],
        cond.c2w[frames],
        cond.tracks[:, frames],
        cond.track_visible[:, frames],
        cond.track_radius,
        plan.masks,
        fallback_depth=spec.fallback_depth,
        height=spec.height,
        width=spec.width,
        region_feather=plan.feather,
        drags=None if plan.drags is None else plan.drags.at_frames(frames),
        inverse=plan.inverse,
        kernels=flow_kernels(),
    )


def flow_kernels():
    """backend/flow_kernel.py through backend.compiled.load (numpy's bits, one pass), or None:
    unified_flow projects with numpy."""
    from ..compiled import load

    return load("backend.flow_kernel", _flow_smoke_test)


def _flow_smoke_test(kernel) -> None:
    invd = np.ones((2, 2), np.float32)
    q, rows, cols = np.ones((3, 2, 2), np.float32), np.ones((3, 2), np.float32), np.ones((3, 2), np.float32)
    kernel.points(invd, rows, cols, np.ones(3, np.float32), np.ones(3, bool), q)
    flow, depth, valid = np.empty((2, 2, 2), np.float32), np.empty((2, 2), np.float32), np.empty((2, 2), bool)
    kernel.finish(q, invd, rows[0], cols[0], flow, depth, valid)


def plate_layer(ctx: JobContext, plan: FlowPlan, f: int):
    """Frame f's clean-plate layer for render_frame: (image, flow (H, W, 2), depth (H, W), sources)
    moved by the camera alone, or None when the job has no plate for its moved objects."""
    plate = plan.plate
    if plate is None:
        return None
    cond = ctx.cond
    K, c2w = cond.K[[0, f]], cond.c2w[[0, f]]
    flow, depth, _ = camera_flow(plate.depth, K, c2w, inverse=plate.inverse, kernels=flow_kernels())
    return plate.image, flow[1], depth[1], plate.sources


def frame_flow(ctx: JobContext, plan: FlowPlan, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 of frame f alone: flow (H, W, 2) float32 and depth (H, W) float32, as
    preview_flow(ctx).flow[f] and .depth[f] (tests/backend/test_preview_mode.py)."""
    uf = _unified(ctx, plan, [0, f])
    flow, depth = uf.flow[-1], uf.depth[-1]
    if plan.reference is not None:
        flow += plan.reference[f]
    return flow, depth


def preview_flow(ctx: JobContext) -> PreviewFlow:
    """Steps 1 and 2 of the module docstring for all frames at once: stage 1 of the model modes
    when they have none (the preview itself streams, frame_flow)."""
    plan = flow_plan(ctx, reference=False)
    uf = _unified(ctx, plan, slice(None))
    ctx.progress("flow", 1, 1, "flow ready")
    add_reference_motion(ctx, plan)
    if plan.reference is not None:
        uf.flow += plan.reference
    return PreviewFlow(uf.flow, uf.depth, plan.rim, plan.info)


def generate(ctx: JobContext) -> ModeResult:
    """The preview of the job in `ctx` as a stream (see the module docstring): frame f is
    (H, W, 3) uint8 (frame 0 is the reference itself) with its flow (H, W, 2) float32 pixels;
    info (facts for result.json) is complete once the last frame has been made."""
    spec = ctx.spec
    F, H, W = spec.num_frames, spec.height, spec.width
    try:
        method = resolve_method(os.environ.get("ANIMATE_ANYTHING_FILL", DEFAULT_FILL), have_depth=True)
    except ValueError as exc:
        raise JobFailure(
            "invalid_job", f"ANIMATE_ANYTHING_FILL: {exc}", "Unset it or pick a listed filler."
        ) from exc
    plan = flow_plan(ctx)
    image = ctx.reference
    holes = np.zeros(F, np.float64)
    info = plan.info
    workers = _frame_threads(ctx)

    def render(f: int) -> tuple[np.ndarray, np.ndarray]:
        if f == 0:
            return image, np.zeros((H, W, 2), np.float32)
        flow, depth = frame_flow(ctx, plan, f)
        frame, holes[f] = render_frame(image, flow, depth, plan.rim, method, plate_layer(ctx, plan, f))
        return frame, flow

    def finish() -> None:
        info.update(
            splat=f"softmax forward splatting, depth sharpness {DEPTH_SHARPNESS:g}",
            splat_engine="numba" if compiled_kernel() is not None else "numpy",
            fill=method,
            hole_fraction_mean=round(float(holes.mean()), 4),
            hole_fraction_max=round(float(holes.max()), 4),
            frame_threads=workers,
        )

    stream = FrameStream(
        F,
        render,
        has_flow=True,
        workers=workers,
        stage="render",
        finish=finish,
        message="splatting and filling frames",
    )
    return ModeResult(stream, None, info)


def _frame_threads(ctx: JobContext) -> int:
    """ctx.workers, or fewer when their frames would not fit in the free memory (warned):
    preview/budget.py, with the memory this process set aside for the job (a standby's reserve)."""
    from ..allocator import reserved_bytes
    from ..runtime.devices import host_free_memory

    W, H, wanted = ctx.width, ctx.height, ctx.workers
    free = host_free_memory()
    if free is not None:
        free += reserved_bytes()
    workers = frame_threads(W, H, wanted, free)
    if workers < wanted:
        per_thread = HEAP_BYTES_PER_PIXEL[1] * W * H / 2**30
        ctx.warn(
            f"the preview ran {workers} frame thread(s) instead of {wanted}: each takes about "
            f"{per_thread:.1f} GB at {W}x{H} and {free / 2**30:.1f} GB of memory was free. Close "
            "other programs, or lower the resolution, for a faster preview"
        )
    return workers


def render_frame(image, flow, depth, rim, method: str, plate=None) -> tuple[np.ndarray, float]:
    """Step 3 for one frame: the reference `image` (H, W, 3) uint8 splatted along `flow`
    (H, W, 2) with `depth` (H, W) (points at <= 0 are behind the camera: dropped; so is `rim`),
    holes filled with `method`. `plate` (plate_layer's tuple) is splatted too, and shows where
    the reference leaves holes. Returns the frame (H, W, 3) uint8 and its hole fraction (before
    the plate)."""
    front = depth > 0
    if rim is not None:
        front &= ~rim
    s = forward_splat(image, flow, depth, front, want_depth=method == "background" or plate is not None)
    holes = float(s.hole.mean())
    if plate is not None:
        p_image, p_flow, p_depth, sources = plate
        p = forward_splat(p_image, p_flow, p_depth, sources & (p_depth > 0), want_depth=True)
        use = s.hole & ~p.hole
        s.image[use] = p.image[use]
        s.depth[use] = p.depth[use]
        s.hole &= ~use
    return fill_holes(s.image, s.hole, depth=s.depth, method=method), holes
