"""The README's main command, end to end: `bash scripts/demo.sh` (the set-up, which only checks on
a set-up machine, then scripts/demo.py in a fresh process), at small sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.blender]
ROOT = Path(__file__).resolve().parents[1]

OPEN_BLEND = """
import json, os, sys, bpy
bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
cam = scene.camera
info = {
    "strips": [(s.type, s.channel, s.frame_final_start, s.frame_final_duration)
               for s in scene.sequence_editor.strips],
    "background": [(b.image.source, b.image_user.frame_duration, bpy.path.abspath(b.image.filepath))
                   for b in cam.data.background_images],
    "shown": cam.data.show_background_images,
    "drags": [o.name for o in bpy.data.objects if o.type == "GREASEPENCIL"],
}
print("INFO " + json.dumps(info))
sys.stdout.flush()
os._exit(0)
"""


def test_the_demo_builds_generates_imports_and_saves(tmp_path):
    pytest.importorskip("bpy")
    out = tmp_path / "demo"
    args = ["--output", str(out), "--frames", "9", "--width", "160", "--height", "96", "--samples", "2"]
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), *args],  # the README's command: set-up, then the demo
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Files in {out}" in proc.stdout
    blend, sheet = out / "demo.blend", out / "contact_sheet.png"
    assert blend.is_file() and sheet.is_file() and not (out / "demo.blend1").exists()
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.size == (4 * (160 + 4) + 4, 3 * (96 + 4) + 4)
        assert len(set(im.convert("L").getdata())) > 50, "the contact sheet holds real frames"
    # With PyAV the generator encodes; without it Blender's FFmpeg does (animate_anything.encode_video).
    assert (out / "video.mp4").stat().st_size > 1000 and (out / "flow.mp4").stat().st_size > 1000

    # A newcomer opening the .blend sees the strip and the camera background, found by relative paths.
    opened = subprocess.run(
        [sys.executable, "-c", OPEN_BLEND, str(blend)], capture_output=True, text=True, timeout=120
    )
    line = next(x for x in opened.stdout.splitlines() if x.startswith("INFO "))
    info = json.loads(line[5:])
    assert info["strips"] == [["MOVIE", 1, 1, 9]]
    assert info["shown"] and len(info["background"]) == 1
    source, duration, path = info["background"][0]
    assert source == "MOVIE" and duration == 9
    assert Path(path).is_file() and Path(path).is_relative_to(out)
    assert info["drags"] == ["Drags"]
