"""One track convention in every mode and in training: a static pin under a panning camera means the
same thing in the preview (its pixel follows the camera flow), in `animateanything` (the screen
tracks its stage 1 receives), in Wan-Move (job_tracks' drag rows) and in the training data (tracks
of a clip whose ground-truth flow is that camera flow). Wan-Move's visibility: valid where the
unified flow is, hidden where something nearer covers the point."""

import numpy as np
import pytest

from backend.context import load_context
from blender_animate.flow import camera_flow

from .jobs import square_box

W, H, F = 64, 48, 5
PIXELS = [(30, 24), (55, 40), (8, 6)]  # on the near square, on the wall (two places)


def _pin_job(make_job, **kw):
    p = np.array([[i + 0.5, j + 0.5] for i, j in PIXELS], np.float32)
    tracks = np.repeat(p[:, None], F, axis=1)
    return make_job(width=W, height=H, num_frames=F, camera="pan", tracks=tracks, radius=3.0, **kw)


def _expected(ctx):
    """start + camera flow at each pin's pixel: where a pin on the scene is seen in each frame."""
    cam, _, valid = camera_flow(ctx.depth, ctx.cond.K, ctx.cond.c2w)
    pos = np.stack([np.array([i + 0.5, j + 0.5]) + cam[:, j, i] for i, j in PIXELS])
    return pos, np.stack([valid[:, j, i] for i, j in PIXELS]), cam


def test_convention_static_pin_under_a_pan_in_every_mode(make_job, tmp_path):
    torch = pytest.importorskip("torch")  # Wan-Move's module and the training data import torch
    from backend.modes import animateanything, guided, preview

    ctx = load_context(_pin_job(make_job))
    expected, expected_vis, cam = _expected(ctx)
    assert np.abs(expected[:, -1] - expected[:, 0]).max() > 3.0  # the pan really moves them

    # Preview: the unified flow at each pin's pixel is the camera flow.
    pf = preview.preview_flow(ctx)
    for i, j in PIXELS:
        np.testing.assert_allclose(pf.flow[:, j, i], cam[:, j, i], atol=1e-4)

    # animateanything: the tracks handed to the pipeline's stage 1.
    tracks, visible = animateanything.model_tracks(ctx)
    np.testing.assert_allclose(tracks, expected, atol=1e-4)
    np.testing.assert_array_equal(visible, expected_vis)

    # Wan-Move: the drag rows of the job's tracks (the mode's own helper, the same number of frames).
    wan, wan_vis = guided._wan_tracks(ctx, pf.flow, F)
    np.testing.assert_allclose(wan[: len(PIXELS)], expected, atol=1e-4)
    np.testing.assert_array_equal(wan_vis[: len(PIXELS)], expected_vis)

    # Training: the dataset's tracks for a clip whose ground-truth flow is this camera flow.
    from backend.training.data import ClipDataset, flow_tracks

    xs, ys = np.array(PIXELS).T
    np.testing.assert_allclose(flow_tracks(cam, xs, ys), expected, atol=1e-5)
    clip = _camera_clip(tmp_path / "data" / "clip_000", ctx, cam)
    ds = ClipDataset(clip.parent, F, H, W, num_tracks=40, plucker=False)
    torch.manual_seed(0)
    item = ds[0]
    mask = item["sparse_mask"].numpy().astype(bool)
    sflow = item["sparse_flow"].numpy()
    jj, ii = np.nonzero(mask[-1])
    assert len(ii) > 10
    # Each sampled track starts at a pixel centre and is the screen track of a pin there.
    from blender_animate.track_space import screen_tracks

    pins = np.repeat(np.stack([ii + 0.5, jj + 0.5], -1)[:, None], F, axis=1).astype(np.float32)
    s, _ = screen_tracks(pins, ctx.depth, ctx.cond.K, ctx.cond.c2w)
    np.testing.assert_allclose(sflow[:, jj, ii].transpose(1, 0, 2), s - s[:, :1], atol=0.02)  # float16 flow


def _camera_clip(clip, ctx, cam):
    """A training clip (backend/training/data.py format) of the job's camera: frames, cameras.txt
    and the camera flow as ground truth."""
    from PIL import Image

    from blender_animate.camera import CameraTrack, write_realestate10k
    from blender_animate.flowviz import save_flow

    (clip / "frames").mkdir(parents=True)
    for f in range(F):
        Image.fromarray(ctx.reference).save(clip / "frames" / f"{f:05d}.png")
    write_realestate10k(clip / "cameras.txt", CameraTrack(c2w=ctx.cond.c2w, K=ctx.cond.K, width=W, height=H))
    save_flow(clip / "flow.npz", cam)
    return clip


def test_convention_animateanything_without_drags_or_depth(make_job):
    from backend.modes import animateanything

    assert animateanything.model_tracks(load_context(make_job(camera="pan"))) == (None, None)
    ctx = load_context(_pin_job(make_job, name="flat", depth=None, fallback_depth=5.0))
    tracks, _ = animateanything.model_tracks(ctx)
    flat, _, _ = camera_flow(np.full((H, W), 5.0, np.float32), ctx.cond.K, ctx.cond.c2w)
    i, j = PIXELS[0]
    np.testing.assert_allclose(tracks[0], np.array([i + 0.5, j + 0.5]) + flat[:, j, i], atol=1e-4)


def test_convention_wan_move_point_behind_a_moving_object_is_hidden(make_job):
    """The near square (object 1) is dragged 20 px right over the wall with a static camera: the
    grid point on the wall at (56.5, 24.5) is covered from frame 3 on, a grid point on the square
    moves with it and stays visible, and the drag itself stays visible."""
    pytest.importorskip("torch")
    from backend.modes import guided, preview
    from backend.wan.tracks import GRID_STEP

    y0, y1, x0, x1 = square_box(H, W)  # x 21..42, y 16..32
    ids = np.zeros((H, W), np.int32)
    ids[y0:y1, x0:x1] = 1
    start = (31.5, 24.5)
    drag = np.stack([np.linspace(start[0], start[0] + 20, F), np.full(F, start[1])], -1)[None]
    job = make_job(
        width=W,
        height=H,
        num_frames=F,
        camera="static",
        tracks=drag.astype(np.float32),
        radius=1.5,
        object_ids=ids,
        objects={"1": {"name": "Square", "in_clean_plate": True}},
        reference_source="render",
    )
    ctx = load_context(job)
    pf = preview.preview_flow(ctx)
    tracks, visible = guided._wan_tracks(ctx, pf.flow, F)
    ys, xs = np.mgrid[GRID_STEP // 2 : H : GRID_STEP, GRID_STEP // 2 : W : GRID_STEP]
    grid = list(zip(xs.reshape(-1), ys.reshape(-1)))
    wall = 1 + grid.index((56, 24))
    square = 1 + grid.index((24, 24))
    np.testing.assert_allclose(tracks[wall], np.repeat([[56.5, 24.5]], F, 0), atol=1e-4)  # it stays put
    assert visible[wall].tolist() == [True, True, True, False, False]  # edge at 42 + 5 f px: covered at 3
    np.testing.assert_allclose(tracks[square, -1], [44.5, 24.5], atol=1e-3)  # moved with the square
    assert visible[square].all() and visible[0].all()
    np.testing.assert_allclose(tracks[0], drag[0], atol=1e-4)  # a static camera: the drag unchanged
    # Resampled to the model's frames: still hidden at the end.
    more, more_vis = guided._wan_tracks(ctx, pf.flow, 2 * F - 1)
    assert more.shape == (len(tracks), 2 * F - 1, 2) and not more_vis[wall, -1] and more_vis[wall, 2]
