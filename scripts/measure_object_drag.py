"""Measure how far an open drag moves the object it is drawn on (issue 12's object error).

    .venv/bin/python scripts/measure_object_drag.py [--root EXTENSION_ROOT] [--discs]

Loads the extension at --root (default: this repository; an older checkout measures "before") the
way Blender loads a user extension, builds tests/blender/test_object_drags.py's scene (a red and a
blue cube before a grey ground, a static camera), draws one open grease-pencil stroke with the
default point radius from the red cube's centre by (24, -10) px, runs Generate (preview, the
reference rendered in a background Blender) and prints, measured on the output video: the red
cube's motion, the object error (its distance to the request), the blue cube's motion and the red
area's ratio. --discs sets Drag Regions to Discs (when the extension has the setting).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the extension to measure")
    ap.add_argument("--discs", action="store_true", help="Drag Regions: Discs")
    args = ap.parse_args()
    import bpy

    from tests.blender import conftest
    from tests.blender.test_object_drags import build_studio, drag_red_cube

    with tempfile.TemporaryDirectory(prefix="aa_measure_") as tmp:
        os.symlink(args.root.resolve(), Path(tmp) / conftest.EXT_ID, target_is_directory=True)
        conftest._enable(bpy, tmp)
        try:
            scene = conftest.reset_file(bpy)
            gpd = build_studio(bpy, scene, conftest.submodule("operators.adapter.compat"), Path(tmp) / "jobs")
            if args.discs and hasattr(scene.animate_anything, "drag_regions"):
                scene.animate_anything.drag_regions = "DISCS"
            result = drag_red_cube(bpy, scene, gpd)
        finally:
            conftest.disable_extension(bpy)
    result["extension"] = str(args.root)
    print(json.dumps(result, indent=2))
    sys.stdout.flush()
    os._exit(0)  # bpy 4.5 can hang at interpreter exit


if __name__ == "__main__":
    main()
