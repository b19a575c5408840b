"""The reference render in a background Blender: a script, never imported by the add-on.

reference_job.py starts it on a saved copy of the artist's file, with an argument list:
``blender --background --factory-startup COPY.blend --python render_child.py -- ARGS.json`` (a
Blender), or ``python render_child.py ARGS.json`` (the bpy module, where `bpy.app.binary_path` is
empty: that Python imports bpy and opens the copy). ARGS.json holds blend, scene, view_layer,
frame, width, height, quality, hide (object names), folder, drag_starts ((P, 2) job pixels of the
drags an outline does not claim; [] = no clean plate) and object_max_share. It renders with
identity.render_scene (loaded from the files beside this one, so the child needs no installed
add-on, only bpy and numpy) and writes into folder: color.png, depth.npy, ids.npy (the
object-identity pass, (h, w) int32 at the render size), with a clean plate also plate/color.png and
plate_depth.npy, then render.json (last, atomically: its presence means the rest is there; it
names the files and holds clip_end, warnings, hidden, objects {"<id>": name}, plate_ids). It prints
``AA_PROGRESS <json>`` lines (steps of 3: reference, identity, clean plate) and, on a failure,
``AA_ERROR <json>`` and exits 1.
"""

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "_animate_anything_render_adapter"


def _say(kind: str, **fields) -> None:
    sys.stdout.write(f"{kind} {json.dumps(fields)}\n")
    sys.stdout.flush()


def _identity_module():
    """The adapter's identity.py (with its relative imports of reference.py and compat.py) as a
    private package."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, HERE / "__init__.py", submodule_search_locations=[str(HERE)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.identity")


def main(argv: list[str]) -> int:
    args_path = argv[argv.index("--") + 1] if "--" in argv else argv[1]
    args = json.loads(Path(args_path).read_text())
    import bpy
    import numpy as np

    if Path(bpy.data.filepath or ".").resolve() != Path(args["blend"]).resolve():
        bpy.ops.wm.open_mainfile(filepath=args["blend"], load_ui=False)
    identity = _identity_module()
    reference = identity.reference
    scene = bpy.data.scenes[args["scene"]]
    view_layer = scene.view_layers[args["view_layer"]]
    hide = [bpy.data.objects[name] for name in args["hide"] if name in bpy.data.objects]
    folder = Path(args["folder"])
    _say("AA_PROGRESS", stage="render", step=0, total=3)
    try:
        raw = identity.render_scene(
            scene,
            view_layer,
            int(args["frame"]),
            folder,
            width=int(args["width"]),
            height=int(args["height"]),
            quality=args["quality"],
            hide=hide,
            drag_starts=np.asarray(args.get("drag_starts", []), np.float64).reshape(-1, 2),
            object_max_share=float(args.get("object_max_share", identity.DEFAULT_OBJECT_MAX_SHARE)),
            progress=lambda step: _say("AA_PROGRESS", stage="render", step=step, total=3),
        )
    except reference.ReferenceImageError as exc:
        _say("AA_ERROR", message=str(exc))
        return 1
    _say("AA_PROGRESS", stage="render", step=3, total=3)
    np.save(folder / "depth.npy", raw.depth)
    np.save(folder / "ids.npy", raw.ids)
    info = {
        "color": str(raw.color_path.relative_to(folder)),
        "depth": "depth.npy",
        "ids": "ids.npy",
        "objects": {str(i): name for i, name in raw.names.items()},
        "plate_ids": raw.plate_ids,
        "clip_end": raw.clip_end,
        "warnings": raw.warnings,
        "hidden": [ob.name for ob in hide],
    }
    if raw.plate_path is not None:
        np.save(folder / "plate_depth.npy", raw.plate_depth)
        info.update(plate_color=str(raw.plate_path.relative_to(folder)), plate_depth="plate_depth.npy")
    tmp = folder / "render.json.partial"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, folder / "render.json")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except Exception as exc:  # reported to the add-on, which shows it
        _say("AA_ERROR", message=f"the reference render failed: {exc!r}")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # bpy 4.5 can hang at interpreter exit
