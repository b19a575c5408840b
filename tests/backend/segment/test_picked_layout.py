"""backend.segment.picked_layout on real job folders (tests/backend/jobs.py write_job)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.context import load_context
from backend.segment import picked_layout
from tests.backend.jobs import write_job
from tests.backend.segment.synthetic import iou, textured_disc

H, W, F = 96, 128, 4


def _tracks(starts, dx=6.0):
    starts = np.asarray(starts, np.float32)
    steps = np.arange(F, dtype=np.float32)[None, :, None] * np.array([dx, 0.0], np.float32)
    return starts[:, None, :] + steps


def _job(tmp_path, starts, **fields):
    image, disc = textured_disc(0, height=H, width=W)
    job = write_job(
        tmp_path / "job",
        width=W,
        height=H,
        num_frames=F,
        depth=None,
        reference=image,
        tracks=_tracks(starts),
        **fields,
    )
    return load_context(job), disc


def test_drags_on_one_object_share_its_id_and_others_move_discs(tmp_path):
    # two drags on the disc, one on the background stripes (a region over the share, or none)
    ctx, disc = _job(tmp_path, [[70.5, 44.5], [60.5, 50.5], [8.5, 8.5]], object_max_share=0.2)
    out = picked_layout(ctx)
    assert out.object_ids is not None and out.object_ids.dtype == np.int32 and out.object_ids.shape == (H, W)
    assert out.info["method"] in ("opencv", "numpy")
    first = out.info["regions"][0]
    assert first["drags"] == [0, 1]
    assert out.objects["1"] == {"name": "region 1", "in_clean_plate": True}
    assert iou(out.object_ids == 1, disc) > 0.85
    assert out.depth is None  # no depth model: the flow uses the plane


def test_a_region_over_the_share_is_dropped_with_a_warning(tmp_path):
    ctx, _ = _job(tmp_path, [[70.5, 44.5]], object_max_share=0.05)  # the disc is 17% of the frame
    out = picked_layout(ctx)
    assert out.object_ids is None and out.objects == {}
    assert any("drag 0" in w and "moves a disc" in w for w in out.warnings)


def test_outlines_win_and_rendered_ids_are_kept(tmp_path):
    ctx, disc = _job(tmp_path, [[70.5, 44.5]])
    ctx.cond.region_masks = disc[None].copy()  # the drag starts inside a closed outline
    assert picked_layout(ctx).object_ids is None
    ctx, _ = _job(tmp_path / "b", [[70.5, 44.5]], drag_regions="discs")
    assert picked_layout(ctx).object_ids is None and picked_layout(ctx).info == {}
    ctx, _ = _job(tmp_path / "c", [[70.5, 44.5]], reference_source="render")
    assert picked_layout(ctx).object_ids is None


def test_sam_path_and_depth_model(tmp_path, tiny_sam, tiny_depth):
    ctx, _ = _job(
        tmp_path,
        [[70.5, 44.5], [20.5, 80.5]],
        segment_model=str(tiny_sam),
        depth_model=str(tiny_depth),
        fallback_depth=4.0,
    )
    stages = []
    ctx.progress = lambda stage, step, total, message="": stages.append(stage)
    out = picked_layout(ctx)
    assert out.info["method"] == "sam2" and {"segment", "depth"} <= set(stages)
    assert out.depth.shape == (H, W) and out.depth.dtype == np.float32
    assert np.median(out.depth) == pytest.approx(4.0, rel=1e-4)
    # random weights: whatever regions came out obey the rules (ids 1..n, each under the share)
    ids = np.unique(out.object_ids) if out.object_ids is not None else np.zeros(1, np.int32)
    assert set(ids.tolist()) - {0} == {int(k) for k in out.objects}
    for entry in out.info["regions"]:
        assert entry["share"] <= ctx.spec.object_max_share
    assert np.array_equal(picked_layout(ctx).depth, out.depth)  # deterministic


def test_a_broken_model_falls_back_with_a_warning(tmp_path):
    folder = tmp_path / "sam_bin"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "sam2"}')
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    ctx, disc = _job(
        tmp_path, [[70.5, 44.5]], segment_model=str(folder), depth_model=str(tmp_path / "missing")
    )
    out = picked_layout(ctx)
    assert out.info["method"] in ("opencv", "numpy") and iou(out.object_ids == 1, disc) > 0.85
    assert any("SAM 2 was not used" in w and "safetensors" in w for w in out.warnings)
    assert any("treated as a flat plane" in w for w in out.warnings) and out.depth is None


def test_preview_run_moves_the_segmented_region(tmp_path):
    """`python -m backend run` on a picked image: the drag moves the region it starts on."""
    import json

    from tests.backend.jobs import parse_events, run_backend

    image, _ = textured_disc(0, height=H, width=W)
    job = write_job(
        tmp_path / "job",
        width=W,
        height=H,
        num_frames=F,
        camera="static",
        depth=None,
        reference=image,
        tracks=_tracks([[70.5, 44.5]]),
        mode="preview",
    )
    proc = run_backend("run", job)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert parse_events(proc.stdout)[-1]["event"] == "done"
    result = json.loads((job / "out" / "result.json").read_text())
    kinds = [m["kind"] for m in result["info"]["drags"]]
    assert kinds == ["object"], result["info"]["drags"]


def test_numpy_and_pillow_only(tmp_path, hide_optional):
    """With OpenCV, scipy and torch hidden (Blender's own Python), the numpy path finds the disc,
    and a SAM 2 setting that names an empty folder is a warning, not a failure."""
    import subprocess
    import sys

    from tests.backend.jobs import ROOT, backend_env

    ctx_dir = tmp_path / "job"
    image, disc = textured_disc(0, height=H, width=W)
    write_job(
        ctx_dir,
        width=W,
        height=H,
        num_frames=F,
        depth=None,
        reference=image,
        tracks=_tracks([[70.5, 44.5]]),
        segment_model=str(tmp_path),
    )
    np.save(tmp_path / "disc.npy", disc)
    code = (
        "import sys, json, numpy as np\n"
        "from backend.context import load_context\n"
        "from backend.segment import picked_layout\n"
        "out = picked_layout(load_context(sys.argv[1]))\n"
        "disc = np.load(sys.argv[2])\n"
        "m = out.object_ids == 1\n"
        "print(json.dumps({'method': out.info['method'], 'iou': float((m & disc).sum() / (m | disc).sum()),"
        " 'cv2': 'cv2' in sys.modules, 'warnings': out.warnings}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ctx_dir), str(tmp_path / "disc.npy")],
        cwd=ROOT,
        env=backend_env([hide_optional]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["method"] == "numpy" and not result["cv2"]
    assert result["iou"] > 0.85
    assert any("SAM 2 was not used" in w for w in result["warnings"])
