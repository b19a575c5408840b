"""Registration: every class registers and unregisters cleanly, twice in a row, from the source
folder and from the built zip installed the way a user installs it."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.blender.conftest import build_extension_zip, run_installed, submodule

pytestmark = pytest.mark.blender

ROOT = Path(__file__).resolve().parents[2]


def _registered(bpy) -> dict:
    """What the extension puts into Blender (True/False per item)."""
    from bpy.types import Panel

    panels = [c for c in Panel.__subclasses__() if c.__name__.startswith("ANIMATE_ANYTHING_PT_")]
    return {
        "scene_settings": hasattr(bpy.types.Scene, "animate_anything"),
        "export_operator": hasattr(bpy.types, "ANIMATE_ANYTHING_OT_export_job"),
        "settings_type": bpy.types.PropertyGroup.bl_rna_get_subclass_py("AnimateAnythingSettings")
        is not None,
        "panels": all(getattr(bpy.types, c.__name__, None) is not None for c in panels) and len(panels) >= 8,
        "no_panel": not any(getattr(bpy.types, c.__name__, None) is not None for c in panels),
    }


def test_register_unregister_twice(extension, bpy_module, aa):
    bpy = bpy_module
    state = _registered(bpy)
    assert state.pop("no_panel") is False and all(state.values()), state
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    assert prefs.device == "auto" and prefs.python_path == ""
    classes = [c for m in extension._loaded for c in getattr(m, "classes", ())]
    assert len(classes) >= 11 and all(c.is_registered for c in classes)
    standby = submodule("blender_animate.addon.standby")
    for _ in range(2):
        waiting = standby.prepare(
            [sys.executable, "-c", "import sys; sys.stdin.read()"], ".", dict(os.environ)
        )
        extension.unregister()
        assert waiting.poll() is not None and standby.current() is None, "disabling ends the standby"
        assert not any(c.is_registered for c in classes)
        state = _registered(bpy)
        assert not state["scene_settings"] and not state["export_operator"] and not state["settings_type"]
        assert state["no_panel"]
        extension.register()
        classes = [c for m in extension._loaded for c in getattr(m, "classes", ())]
        assert all(c.is_registered for c in classes)
        state = _registered(bpy)
        assert state.pop("no_panel") is False and all(state.values()), state
    # The settings work after the round trips.
    bpy.context.scene.animate_anything.num_frames = 81
    assert bpy.context.scene.animate_anything.num_frames == 81


def test_panels_say_why_export_is_grey(ext, aa, bpy_module):
    bpy = bpy_module
    _, scene = ext
    export = aa("operators.adapter.job_export")
    problems = export.settings_problems(bpy.context)
    assert problems == ["No scene camera: add a camera and set it as the scene camera"]
    assert not bpy.ops.animate_anything.export_job.poll()
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    assert export.settings_problems(bpy.context) == [] and bpy.ops.animate_anything.export_job.poll()
    for space in ("VIEW_3D", "SEQUENCE_EDITOR"):
        assert any(
            getattr(bpy.types, n).bl_space_type == space and getattr(bpy.types, n).bl_category == "Animate"
            for n in dir(bpy.types)
            if n.startswith("ANIMATE_ANYTHING_PT_")
        )


INSTALL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import bpy, addon_utils
    zip_path = sys.argv[1]
    out = {}
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    out["install"] = sorted(result)
    pkg = "bl_ext.user_default.animate_anything"
    out["enabled"] = pkg in bpy.context.preferences.addons
    out["prefs"] = getattr(bpy.context.preferences.addons.get(pkg), "preferences", None) is not None
    try:
        import PIL
        out["pillow"] = PIL.__file__
    except ImportError:
        out["pillow"] = None
    def extension_classes():
        found = []
        for module in sys.modules[pkg]._loaded:
            found += list(getattr(module, "classes", ()))
        return found

    rounds = []
    for _ in range(2):
        classes = extension_classes()
        ok_on = hasattr(bpy.types.Scene, "animate_anything") and all(c.is_registered for c in classes)
        addon_utils.disable(pkg, default_set=True)
        ok_off = not any(c.is_registered for c in classes)
        ok_off = ok_off and not hasattr(bpy.types.Scene, "animate_anything")
        addon_utils.enable(pkg, default_set=True)
        rounds.append([ok_on, ok_off, len(classes)])
    out["rounds"] = rounds
    out["operators"] = sorted(
        c.bl_idname for c in extension_classes() if issubclass(c, bpy.types.Operator)
    )
    home = os.environ["HOME"]
    out["pil_in_home"] = [
        d for d in sys.path if d.startswith(home) and os.path.isfile(os.path.join(d, "PIL", "__init__.py"))
    ]
    out["files"] = sorted(
        os.path.relpath(os.path.join(d, f), os.path.dirname(sys.modules[pkg].__file__))
        for d, _, fs in os.walk(os.path.dirname(sys.modules[pkg].__file__)) for f in fs
        if "__pycache__" not in d
    )
    addon_utils.disable(pkg, default_set=True)
    print("RESULT " + json.dumps(out))
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_built_zip_installs_and_enables(bpy_module, tmp_path):
    zip_path = build_extension_zip(tmp_path)
    wheels = list((ROOT / "wheels").glob("pillow-*manylinux*.whl"))
    import zipfile

    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "operators/export_job.py" in names
    assert not any(n.startswith(("tests/", "scripts/", "docs/", ".venv", "benchmarks/")) for n in names)
    # This platform only, for both Pythons: cp311 (Blender 4.5, 5.0) and cp313 (5.1, 5.2, 5.3).
    assert sorted(n for n in names if n.endswith(".whl")) == sorted(f"wheels/{w.name}" for w in wheels)
    assert {w.name.split("-")[2] for w in wheels} == {"cp311", "cp313"}

    out, _ = run_installed(INSTALL_SCRIPT, str(zip_path), tmp_path=tmp_path)
    assert out["install"] == ["FINISHED"] and out["enabled"] and out["prefs"]
    assert [r[:2] for r in out["rounds"]] == [[True, True], [True, True]] and out["rounds"][0][2] >= 11
    assert "animate_anything.export_job" in out["operators"]
    assert "blender_animate/job.py" in out["files"] and not any(f.startswith("tests") for f in out["files"])
    # The file the missing-package hints name is in the installed extension.
    assert "backend/requirements-generator.txt" in out["files"]
    assert "operators/adapter/render_child.py" in out["files"]  # the reference render's script
    # The bundled Pillow wheel was extracted under the temporary HOME, on sys.path (disabling the
    # extension removes it again): the wheel of this Blender's Python, which Blender accepted.
    assert out["pillow"] is not None and out["pil_in_home"]
    python = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert all(f"/{python}/site-packages" in d for d in out["pil_in_home"]), out["pil_in_home"]


class _Recorder:
    """Stands in for a UILayout (none exists without a window): records every prop() and
    operator() call and hands itself out for row()/column()/box()."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        if name in ("row", "column", "box", "split", "grid_flow", "column_flow"):
            return lambda *a, **k: self
        if name in ("prop", "operator", "template_ID", "progress", "label"):
            return lambda *a, **k: self.calls.append((name, a, k))
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name == "calls":
            object.__setattr__(self, name, value)


def test_panels_draw_real_properties_and_operators(ext, aa, bpy_module):
    """Every panel's draw() names properties that exist and operators that are registered."""
    import types

    bpy = bpy_module
    _, scene = ext
    s = scene.animate_anything
    s.reference_source, s.drag_source = "FILE", "GREASE_PENCIL"
    names = [n for n in dir(bpy.types) if n.startswith("ANIMATE_ANYTHING_PT_")]
    assert len(names) == 8
    calls = []
    for name in names:
        cls = getattr(bpy.types, name)
        assert cls.poll(bpy.context)
        cls.draw(types.SimpleNamespace(layout=_Recorder(calls)), bpy.context)
    props = [(a[0], a[1]) for kind, a, _ in calls if kind in ("prop", "template_ID")]
    assert ("reference_image" in {p for _, p in props}) and ("drag_layer" in {p for _, p in props})
    for data, prop in props:
        assert prop in data.bl_rna.properties, prop
    ops = {a[0] for kind, a, _ in calls if kind == "operator"}
    assert "animate_anything.export_job" in ops
    for op in ops:
        module, _, name = op.partition(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises KeyError when not registered
    # Why the buttons are grey is drawn as alert labels.
    assert any(kind == "label" and "No scene camera" in k.get("text", "") for kind, _, k in calls)
    prefs = bpy.context.preferences.addons[aa("panels.preferences").ADDON_PACKAGE].preferences
    calls.clear()
    type(prefs).draw(types.SimpleNamespace(layout=_Recorder(calls)), bpy.context)
    assert {a[1] for kind, a, _ in calls if kind == "prop"} >= {
        "python_path",
        "device",
        "offload",
        "allow_download",
    }
