"""Fixtures for tests that run inside the bpy module (Blender 4.5 LTS or 5.0).

- `bpy_module`: imports bpy once per process (skips the tests when it is not installed).
- `extension`: loads this repository the way Blender loads a user extension: a temporary
  extension repository whose folder holds a symlink `animate_anything` -> the repository root,
  then `addon_utils.enable("bl_ext.<repo>.animate_anything")`. Yields the Python module. At the end of
  the session the add-on is disabled and the repository removed (bpy 4.5 can hang at interpreter
  exit while classes of ours are still registered).
- `scene` (function scope): a factory reset (empty file) before the test; yields the scene.
- `ext`: `extension` + a fresh `scene`, the usual pair a test needs.
- `aa`: `aa("operators.export_job")` imports a module of the loaded extension.
- `build_extension_zip(dir)` / `run_installed(script, zip, tmp_path)`: the extension as a user installs
  it (the built zip, installed by a fresh Python process into a temporary HOME).

Do not keep non-ID bpy references (scene.render, mesh.vertices[0]) across tests: a reset frees them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXT_ID = "animate_anything"
REPO_MODULE = "aa_test_repo"
PACKAGE = f"bl_ext.{REPO_MODULE}.{EXT_ID}"


def _import_bpy():
    try:
        import bpy
    except ImportError as exc:  # a plain Python without the bpy wheel
        pytest.skip(f"the bpy module is not installed ({exc})")
    return bpy


@pytest.fixture(scope="session")
def bpy_module():
    return _import_bpy()


def _enable(bpy, folder: str):
    import addon_utils

    prefs = bpy.context.preferences
    repo = prefs.extensions.repos.get(REPO_MODULE)
    if repo is None:
        repo = prefs.extensions.repos.new(
            name=REPO_MODULE, module=REPO_MODULE, custom_directory=folder, source="USER"
        )
    mod = addon_utils.enable(PACKAGE, default_set=True, handle_error=_raise)
    if mod is None:
        raise RuntimeError(f"could not enable {PACKAGE}")
    return mod


def _raise(exc):
    raise exc


def disable_extension(bpy) -> None:
    """Disable the add-on (unregistering every class) and drop the test repository."""
    import addon_utils

    addon_utils.disable(PACKAGE, default_set=True, handle_error=_raise)
    repos = bpy.context.preferences.extensions.repos
    repo = repos.get(REPO_MODULE)
    if repo is not None:
        repos.remove(repo)


@pytest.fixture(scope="session")
def extension(bpy_module):
    bpy = bpy_module
    with tempfile.TemporaryDirectory(prefix="aa_ext_repo_") as folder:
        os.symlink(ROOT, Path(folder) / EXT_ID, target_is_directory=True)
        mod = _enable(bpy, folder)
        try:
            yield mod
        finally:
            disable_extension(bpy)
            for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
                del sys.modules[name]


def reset_file(bpy):
    """An empty file (no objects, one scene) without touching the preferences or add-ons."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    return bpy.context.scene


@pytest.fixture
def scene(bpy_module):
    return reset_file(bpy_module)


@pytest.fixture
def ext(extension, scene):
    """(extension module, fresh scene)."""
    return extension, scene


def submodule(name: str):
    """A module of the loaded extension, e.g. submodule("operators.adapter.scene_camera")."""
    import importlib

    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def aa(extension):
    """`aa("operators.adapter.scene_camera")`: a module of the loaded extension (pytest runs with
    --import-mode=importlib, so test files cannot import this conftest; they use this fixture)."""
    return submodule


def build_extension_zip(output_dir: Path) -> Path:
    """Build the extension into `output_dir` with scripts/build_extension.py (no downloads) and
    return this platform's zip. Skips the test when wheels/ has no Pillow wheel."""
    if not list((ROOT / "wheels").glob("pillow-*manylinux*.whl")):
        pytest.skip("wheels/ has no Pillow wheel: run scripts/fetch_wheels.py (scripts/setup.sh does)")
    build = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_extension.py"),
            "--no-fetch",
            "--output-dir",
            str(output_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr + build.stdout
    (zip_path,) = output_dir.glob("*linux_x64.zip")
    return zip_path


def run_installed(script: str, *args: str, tmp_path: Path) -> tuple[dict, Path]:
    """Run `script` (python -c, with `args`) in a fresh process whose HOME is `tmp_path/home`; the
    script prints one line ``RESULT <json>``. Returns (that object, the HOME folder)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("PYTHONPATH", None)
    env.pop("BLENDER_USER_RESOURCES", None)  # a user's install lives under HOME
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :]), home
