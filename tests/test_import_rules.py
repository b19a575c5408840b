"""The import rules of DESIGN.md, checked on the source (an AST walk, nothing is imported):

- the core (blender_animate/) imports the standard library, numpy and itself (relatively) only;
- the generator (backend/) never imports bpy (nor Blender's other modules);
- operators/ and panels/ never import torch, diffusers or the generator (backend).
Every import statement counts, also those inside functions and `if` blocks.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLENDER_ONLY = {"bpy", "bpy_extras", "bmesh", "mathutils", "gpu", "blf", "aud", "idprop"}
HEAVY = {"torch", "diffusers", "backend"}


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str, bool]]:
    """(line, module, relative) for every import in `path`; relative imports are resolved against
    the file's package (`root`, the repository root, is the extension's top-level package)."""
    package = list(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level == 0:
                found.append((node.lineno, node.module, False))
                continue
            if node.level - 1 > len(package):
                raise AssertionError(f"{path}:{node.lineno}: relative import above the extension root")
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module]), True))
            else:  # `from .. import name`: each name may be a module
                found += [(node.lineno, ".".join([*base, alias.name]), True) for alias in node.names]
    return found


def sources(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def ids(files):
    return [str(p.relative_to(ROOT)) for p in files]


def top(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", sources("blender_animate"), ids=ids(sources("blender_animate")))
def test_core_imports_stdlib_numpy_and_itself(path):
    bad = []
    for line, module, relative in imports(path):
        if relative:
            ok = top(module) == "blender_animate"
        else:  # the core imports itself relatively only
            ok = top(module) in sys.stdlib_module_names or top(module) == "numpy"
        if not ok:
            bad.append(f"line {line}: {'relative ' if relative else ''}import of {module}")
    assert not bad, f"{path.relative_to(ROOT)} breaks the core's import rule: {bad}"


@pytest.mark.parametrize("path", sources("backend"), ids=ids(sources("backend")))
def test_backend_never_imports_blender(path):
    bad = [f"line {line}: {module}" for line, module, _ in imports(path) if top(module) in BLENDER_ONLY]
    assert not bad, f"{path.relative_to(ROOT)} imports Blender modules: {bad}"


BLENDER_SIDE = sources("operators") + sources("panels")


@pytest.mark.parametrize("path", BLENDER_SIDE, ids=ids(BLENDER_SIDE))
def test_blender_side_never_imports_the_generator(path):
    bad = [f"line {line}: {module}" for line, module, _ in imports(path) if top(module) in HEAVY]
    assert not bad, f"{path.relative_to(ROOT)} imports torch, diffusers or the generator: {bad}"


def test_the_walk_sees_every_kind_of_import(tmp_path):
    """The checker itself: absolute, nested and relative imports are all found and resolved."""
    pkg = tmp_path / "operators"
    pkg.mkdir()
    probe = pkg / "probe.py"
    probe.write_text(
        "import os, numpy as np\n"
        "from . import compat\n"
        "from ..backend import runner\n"
        "from .. import backend\n"
        "def f():\n"
        "    import torch\n"
        "    from diffusers import X\n",
        encoding="utf-8",
    )
    found = [(module, relative) for _, module, relative in imports(probe, tmp_path)]
    assert found == [
        ("os", False),
        ("numpy", False),
        ("operators.compat", True),
        ("backend", True),
        ("backend", True),
        ("torch", False),
        ("diffusers", False),
    ]
