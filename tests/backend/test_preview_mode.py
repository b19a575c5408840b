"""Mode `preview` in process: camera moves reveal filled edges, depth order holds, drags move content."""

from __future__ import annotations

import numpy as np
import pytest

from backend.context import load_context
from backend.modes import ModeResult, load_mode
from backend.preview.splat import forward_splat
from tests.backend.jobs import square_box

RED = np.array([230, 40, 40])


def _red(frame):
    return np.abs(frame.astype(int) - RED).sum(-1) < 30


@pytest.mark.parametrize("camera,step", [("pan", 0.3), ("dolly_out", 0.6), ("orbit", 0.0)])
def test_camera_moves_reveal_filled_not_black_edges(make_job, camera, step):
    job = make_job(width=96, height=64, num_frames=5, camera=camera, step=step)
    ctx = load_context(job)
    result = load_mode("preview").generate(ctx).materialize(ctx)
    assert isinstance(result, ModeResult)
    result.check(5, 64, 96)
    # There was something to fill: the raw splat of the last frame has holes ...
    from blender_animate.flow import unified_flow

    c = ctx.cond
    uf = unified_flow(ctx.depth, c.K, c.c2w, height=64, width=96)
    raw = forward_splat(ctx.reference, uf.flow[-1], uf.depth[-1], uf.depth[-1] > 0)
    assert raw.hole.mean() > 0.02
    # ... and the output has none (the texture has no dark pixels, holes would be black).
    assert result.frames[-1].max(axis=-1).min() > 20
    assert result.info["hole_fraction_max"] > 0.02


def test_pan_moves_the_near_square_more_than_the_background(make_job):
    W, H = 96, 64
    job = make_job(width=W, height=H, num_frames=3, camera="pan", step=0.2, near=4.0, far=10.0)
    result = load_mode("preview").generate(load_context(job)).materialize()
    y0, y1, x0, x1 = square_box(H, W)
    # Camera 0.4 right after 2 frames, f = W px: the square (z=4) shifts -W*0.4/4 = -9.6 px.
    red = _red(result.frames[-1])
    cols = np.flatnonzero(red[(y0 + y1) // 2])
    assert abs(cols.min() - (x0 - 9.6)) <= 1.5 and abs(cols.max() - (x1 - 1 - 9.6)) <= 1.5
    # No red smeared into the background revealed on its right.
    assert not red[y0 + 2 : y1 - 2, x1 - 8 : x1 - 2].any()


def test_a_drag_moves_the_square(make_job):
    W, H = 96, 64
    y0, y1, x0, x1 = square_box(H, W)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    F = 4
    track = np.stack([np.linspace(cx, cx + 12, F), np.full(F, cy)], -1)[None].astype(np.float32)
    job = make_job(width=W, height=H, num_frames=F, camera="static", tracks=track, radius=40.0)
    ctx = load_context(job)
    result = load_mode("preview").generate(ctx).materialize(ctx)
    assert np.abs(result.flow[-1, int(cy), int(cx), 0] - 12) < 0.5  # the drag's start point follows it
    red_cols = np.flatnonzero(_red(result.frames[-1])[int(cy)])
    assert abs(red_cols.mean() - (cx + 12)) < 3


class _EventLog:
    """A binary stream for backend.events.Events that keeps the events and calls `on_event`."""

    def __init__(self, on_event=None):
        self.events, self.on_event = [], on_event

    def write(self, line: bytes):
        import json

        self.events.append(json.loads(line))
        if self.on_event is not None:
            self.on_event(self.events[-1])

    def flush(self):
        pass


def test_progress_and_cancel_are_honoured(make_job):
    from backend.cancel import CancelState
    from backend.errors import Cancelled
    from backend.events import Events

    F = 9
    job = make_job(num_frames=F)
    # Progress: the flow stage, then every rendered frame up to F of F.
    log = _EventLog()
    ctx = load_context(job, events=Events(log))
    load_mode("preview").generate(ctx).materialize(ctx)
    progress = [(e["stage"], e["step"], e["total"]) for e in log.events if e["event"] == "progress"]
    assert progress[:2] == [("flow", 0, 1), ("flow", 1, 1)], progress
    render = [p for p in progress if p[0] == "render"]
    assert [step for _, step, _ in render] == list(range(1, F + 1)) and {t for _, _, t in render} == {F}
    # A cancel requested mid-render stops the run at the next progress report.
    state = CancelState()

    def cancel_on_first_render(event):
        if event["event"] == "progress" and event["stage"] == "render":
            state.request("test")

    log = _EventLog(cancel_on_first_render)
    with pytest.raises(Cancelled):
        ctx = load_context(job, events=Events(log), cancel=state)
        load_mode("preview").generate(ctx).materialize(ctx)
    assert [e["stage"] for e in log.events if e["event"] == "progress"] == ["flow", "flow", "render"]
    # A cancel requested before the start: nothing runs, not even the first report.
    state = CancelState()
    log = _EventLog()
    ctx = load_context(job, events=Events(log), cancel=state)
    state.request("test")
    with pytest.raises(Cancelled):
        load_mode("preview").generate(ctx)
    assert log.events == []


def test_a_region_drag_moves_the_object_not_the_background_inside_its_outline(make_job):
    """An outline drawn loosely around the near square, a drag starting on the square: the square
    moves, the far background enclosed by the outline stays where it is (it used to move with
    the square and be splatted over the scene as "fins")."""
    from blender_animate import job as jobio

    W, H, F = 96, 64, 4
    y0, y1, x0, x1 = square_box(H, W)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    track = np.stack([np.linspace(cx, cx + 12, F), np.full(F, cy)], -1)[None].astype(np.float32)
    job = make_job(width=W, height=H, num_frames=F, camera="static", tracks=track, radius=4.0)
    cond = jobio.Conditions.load(job / jobio.CONDITIONS_NPZ)
    outline = np.zeros((1, H, W), bool)
    outline[0, y0 - 8 : y1 + 8, x0 - 8 : x1 + 8] = True
    cond.region_masks = outline
    cond.save(job / jobio.CONDITIONS_NPZ)
    ctx = load_context(job)
    result = load_mode("preview").generate(ctx).materialize(ctx)
    flow = result.flow[-1]
    np.testing.assert_allclose(flow[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2, 0], 12.0, atol=0.01)
    ring = outline[0].copy()
    ring[y0 - 3 : y1 + 3, x0 - 3 : x1 + 3] = False  # the background inside the outline
    assert np.abs(flow[ring]).max() < 0.01
    # It is still there in the last frame, above and below the square's path.
    ref = ctx.reference.astype(int)
    for rows in (slice(y0 - 8, y0 - 3), slice(y1 + 3, y1 + 8)):
        diff = np.abs(result.frames[-1][rows, x0 - 8 : x1 + 8].astype(int) - ref[rows, x0 - 8 : x1 + 8])
        assert diff.max() <= 2
    red_cols = np.flatnonzero(_red(result.frames[-1])[int(cy)])
    assert abs(red_cols.mean() - (cx + 12)) < 3
    assert result.info["region_pixels_left_behind"] > 0
