"""Drags on objects in the preview: the whole object moves, the clean plate shows what it uncovers."""

import numpy as np
import pytest

from backend.context import load_context
from backend.modes import load_mode
from blender_animate import job as jobio

from .jobs import save_png, square_box, texture

W, H, F = 96, 64, 4


def _square_job(make_job, name="job", *, dx=12.0, plate=False, ids=None, **fields):
    """A rendered job: the red square (object 1 "Square") in front of a textured wall, one drag
    starting near the square's corner (inside it), moving dx px right, with a thin stroke radius."""
    y0, y1, x0, x1 = square_box(H, W)
    if ids is None:
        ids = np.zeros((H, W), np.int32)
        ids[y0:y1, x0:x1] = 1
    start = (x0 + 3.5, y0 + 3.5)
    track = np.stack([np.linspace(start[0], start[0] + dx, F), np.full(F, start[1])], -1)[None]
    objects = {"1": {"name": "Square", "in_clean_plate": not plate}}
    job = make_job(
        name,
        width=W,
        height=H,
        num_frames=F,
        camera="static",
        tracks=track.astype(np.float32),
        radius=1.2,
        object_ids=ids,
        objects=objects,
        reference_source="render",
        clean_plate=plate,
        **fields,
    )
    if plate:
        save_png(job / jobio.CLEAN_PLATE_PNG, texture(H, W))  # the wall without the square
        jobio.save_depth(job, np.full((H, W), 10.0, np.float32), jobio.CLEAN_PLATE_DEPTH_NPY)
    return job


def _red(frame):
    r, g, b = (frame[..., c].astype(int) for c in range(3))
    return (r > 200) & (g < 80) & (b < 80)


def _run(job):
    ctx = load_context(job)
    return ctx, load_mode("preview").generate(ctx).materialize(ctx)


def test_an_open_drag_with_a_thin_stroke_moves_the_whole_object(make_job):
    y0, y1, x0, x1 = square_box(H, W)
    ctx, result = _run(_square_job(make_job))
    red = _red(result.frames[-1])
    ys, xs = np.nonzero(red)
    # The whole square, not a disc of the stroke's 1.2 px: same size, 12 px to the right.
    assert red.sum() == pytest.approx((y1 - y0) * (x1 - x0), rel=0.05)
    assert xs.min() == x0 + 12 and xs.max() == x1 - 1 + 12 and ys.min() == y0 and ys.max() == y1 - 1
    np.testing.assert_allclose(
        result.flow[-1][y0:y1, x0:x1], np.broadcast_to([12.0, 0.0], (y1 - y0, x1 - x0, 2))
    )
    assert (result.flow[-1][:y0] == 0).all()  # the wall stays
    assert result.info["drags"] == [
        {"drags": [0], "moves": "Square", "kind": "object", "fit": "translation", "residual_px": 0.0}
    ]


def test_drag_regions_discs_moves_only_the_strokes_disc(make_job):
    y0, y1, x0, x1 = square_box(H, W)
    ctx, result = _run(_square_job(make_job, drag_regions="discs"))
    assert result.info["drags"][0]["kind"] == "disc"
    assert (result.flow[-1][y0 + 10 :, x0 + 10 :] == 0).all()


def test_the_clean_plate_fills_what_the_object_uncovers(make_job):
    y0, y1, x0, x1 = square_box(H, W)
    wall = texture(H, W)
    uncovered = np.s_[y0 + 1 : y1 - 1, x0 + 2 : x0 + 10]  # left of the moved square, away from its edges
    _, with_plate = _run(_square_job(make_job, "a", plate=True))
    _, without = _run(_square_job(make_job, "b", plate=False))
    err_plate = np.abs(with_plate.frames[-1][uncovered].astype(int) - wall[uncovered]).mean()
    err_fill = np.abs(without.frames[-1][uncovered].astype(int) - wall[uncovered]).mean()
    # The true wall, not a guess of it (0.0 against 28 here).
    assert err_plate < 1.0 and err_fill > 10.0
    assert with_plate.info["clean_plate"] == ["Square"]
    # The rest of the frame is untouched by the plate.
    np.testing.assert_array_equal(with_plate.frames[-1][: y0 - 3], without.frames[-1][: y0 - 3])


def test_a_drag_on_an_object_bigger_than_the_share_moves_a_disc(make_job):
    ids = np.ones((H, W), np.int32)  # "the ground": the whole frame
    ctx, result = _run(_square_job(make_job, ids=ids))
    assert result.info["drags"][0]["kind"] == "disc"
