"""The sidebar's Output panel: Generate or Cancel from the real run state, Encode MP4 for a job that
has PNG frames only (a cached disk check)."""

from __future__ import annotations

import json
import types

import pytest

from tests.blender.conftest import submodule

pytestmark = pytest.mark.blender


class _Layout:
    """Records operator(), label() and progress() calls; hands itself out for rows and columns."""

    def __init__(self):
        object.__setattr__(self, "calls", [])

    def __getattr__(self, name):
        if name in ("row", "column", "box"):
            return lambda *a, **k: self
        return lambda *a, **k: self.calls.append((name, a[0] if a else None, k.get("text")))

    def __setattr__(self, name, value):  # use_property_split, scale_y, alert, ...
        pass

    def operators(self):
        return [a for kind, a, _ in self.calls if kind == "operator"]


def draw_output(bpy):
    layout = _Layout()
    panel = bpy.types.ANIMATE_ANYTHING_PT_output_view3d
    panel.draw(types.SimpleNamespace(layout=layout), bpy.context)
    return layout


@pytest.fixture
def sidebar(ext):
    module = submodule("panels.sidebar")
    module._encode_cache.clear()
    yield module
    module._encode_cache.clear()


def test_cancel_follows_the_real_run_not_the_saved_flag(sidebar, bpy_module, monkeypatch):
    bpy = bpy_module
    scene = bpy.context.scene
    runs = submodule("operators.adapter.runs")
    # Nothing runs in this Blender: Generate, no Cancel (the .blend holds no run state at all).
    assert not {"job_running", "job_stage", "last_message"} & set(
        scene.animate_anything.bl_rna.properties.keys()
    )
    ops = draw_output(bpy).operators()
    assert "animate_anything.generate" in ops and "animate_anything.cancel" not in ops
    # A run in progress (in this scene): progress and Cancel, no Generate.
    run = types.SimpleNamespace(scene=scene, stage="splat 3/9", fraction=0.3, finished=False)
    monkeypatch.setattr(runs, "is_running", lambda: True)
    monkeypatch.setattr(runs, "active_run", lambda: run)
    monkeypatch.setattr(runs, "run_for", lambda s: run if run.scene == s else None)
    layout = draw_output(bpy)
    ops = layout.operators()
    assert "animate_anything.cancel" in ops and "animate_anything.generate" not in ops
    assert ("progress", None, "splat 3/9") in layout.calls
    # A run of another scene: said so, and Cancel still stops it.
    other = bpy.data.scenes.new("Other")
    try:
        run.scene = other
        layout = draw_output(bpy)
        assert "animate_anything.cancel" in layout.operators()
        assert ("label", None, "Generating in scene 'Other'") in layout.calls
    finally:
        bpy.data.scenes.remove(other)
    # A run whose scene was deleted meanwhile does not break the panel.
    assert ("label", None, "Generating in scene '?'") in draw_output(bpy).calls


def _last_run(monkeypatch, job_dir):
    """This scene's last run, finished, in job_dir (what the sidebar reads from the run state)."""
    runs = submodule("operators.adapter.runs")
    run = types.SimpleNamespace(job_dir=job_dir, finished=True, full_message=lambda: "Imported 9 frames")
    monkeypatch.setattr(runs, "run_for", lambda scene: run)


def _job(tmp_path, *, frames: bool, video: bool):
    out = tmp_path / "job" / "out"
    (out / "frames").mkdir(parents=True)
    (out / "result.json").write_text(json.dumps({"outputs": {"frames": "out/frames"}}))
    if frames:
        (out / "frames" / "0000.png").write_bytes(b"png")
    if video:
        (out / "video.mp4").write_bytes(b"mp4")
    return tmp_path / "job"


def test_encode_mp4_shows_for_a_job_with_png_frames_only(sidebar, bpy_module, tmp_path, monkeypatch):
    bpy = bpy_module
    clock = [1000.0]  # the panel's clock, advanced by hand: no dependence on how fast this machine is
    monkeypatch.setattr(sidebar, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    assert "animate_anything.encode_video" not in draw_output(bpy).operators()  # no job yet
    job = _job(tmp_path, frames=True, video=False)
    _last_run(monkeypatch, job)
    assert "animate_anything.encode_video" in draw_output(bpy).operators()
    # The disk is asked once per ENCODE_CHECK_SECONDS, however often the panel redraws.
    encode_video = submodule("operators.adapter.encoding")
    asked = []
    real = encode_video.needs_encoding
    monkeypatch.setattr(encode_video, "needs_encoding", lambda d: asked.append(d) or real(d))
    (job / "out" / "video.mp4").write_bytes(b"mp4")  # encoded meanwhile
    for _ in range(5):
        clock[0] += 0.99 * sidebar.ENCODE_CHECK_SECONDS / 5
        assert "animate_anything.encode_video" in draw_output(bpy).operators()
    assert asked == []
    clock[0] = 1000.0 + sidebar.ENCODE_CHECK_SECONDS  # the cached answer has expired
    assert "animate_anything.encode_video" not in draw_output(bpy).operators()
    assert asked == [str(job)]
    # Not for an unfinished job (no result.json).
    _last_run(monkeypatch, tmp_path / "job2")
    (tmp_path / "job2" / "out" / "frames").mkdir(parents=True)
    (tmp_path / "job2" / "out" / "frames" / "0000.png").write_bytes(b"png")
    assert "animate_anything.encode_video" not in draw_output(bpy).operators()


def test_needs_encoding(ext, tmp_path):
    needs_encoding = submodule("operators.adapter.encoding").needs_encoding
    assert needs_encoding(_job(tmp_path / "a", frames=True, video=False))
    assert not needs_encoding(_job(tmp_path / "b", frames=True, video=True))
    assert not needs_encoding(_job(tmp_path / "c", frames=False, video=False))
    assert not needs_encoding(tmp_path / "nowhere") and not needs_encoding("")


def test_why_the_buttons_are_grey_is_computed_once_per_change(ext, bpy_module, monkeypatch):
    """The panel and the Generate/Export polls ask on every redraw; the answer is cached and
    recomputed only after a setting, the camera or a grease-pencil datablock changed."""
    bpy = bpy_module
    _, scene = ext
    checks = submodule("operators.adapter.settings")
    compat = submodule("operators.adapter.compat")
    computed = []
    real = checks._problems
    monkeypatch.setattr(checks, "_problems", lambda context: computed.append(1) or real(context))
    checks.invalidate()
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    for _ in range(3):  # one redraw: the panel, then both polls
        draw_output(bpy)
        bpy.ops.animate_anything.generate.poll()
        bpy.ops.animate_anything.export_job.poll()
    assert len(computed) == 1 and checks.settings_problems(bpy.context) == []
    # A setting changed (its update callback): asked again, and the new answer is drawn.
    ob = bpy.data.objects.new("Drags", compat.grease_pencil_data().new("Drags"))
    scene.collection.objects.link(ob)
    layer = ob.data.layers.new("Drag")
    settings = scene.animate_anything
    settings.drag_source, settings.drag_object, settings.drag_layer = "GREASE_PENCIL", ob, "Drag"
    assert checks.settings_problems(bpy.context) == [] and len(computed) == 2
    # The layer renamed in the grease-pencil data (a depsgraph update, not one of our settings).
    layer.name = "Renamed"
    assert checks.settings_problems(bpy.context) == []  # not seen yet: nothing was evaluated
    bpy.context.view_layer.update()
    problems = checks.settings_problems(bpy.context)
    assert problems == ["'Drags' has no layer 'Drag'"] and len(computed) == 3
    assert ("label", None, "'Drags' has no layer 'Drag'") in draw_output(bpy).calls
    assert not bpy.ops.animate_anything.generate.poll() and len(computed) == 3
    # The export never trusts the cache.
    assert checks.settings_problems(bpy.context, fresh=True) == problems and len(computed) == 4


def test_blenders_silent_clamps_get_a_word_in_the_panel(ext, bpy_module):
    """2000 frames becomes 1024, width 7 becomes 16, 16000 becomes 4096 without a word from
    Blender: the panel says so (issue 10, case 12). A note, not a problem: Generate stays on."""
    bpy = bpy_module
    _, scene = ext
    checks = submodule("operators.adapter.settings")
    s = scene.animate_anything
    assert checks.limit_notes(s) == []
    s.num_frames, s.width, s.height = 2000, 7, 16000  # what a user types; Blender clamps each
    assert (s.num_frames, s.width, s.height) == (1024, 16, 4096)
    notes = checks.limit_notes(s)
    assert notes == [
        "Frames is 1024, the most it can be: Blender sets a larger value to 1024",
        "Width is 16, the least it can be: Blender sets a smaller value to 16",
        "Height is 4096, the most it can be: Blender sets a larger value to 4096",
    ]
    layout = _Layout()
    bpy.types.ANIMATE_ANYTHING_PT_main_view3d.draw(types.SimpleNamespace(layout=layout), bpy.context)
    for note in notes:
        assert ("label", None, note) in layout.calls
    problems = checks.settings_problems(bpy.context, fresh=True)
    assert not any("can be" in p for p in problems)
