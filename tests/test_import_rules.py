"""The import rules of DESIGN.md and the layout (docs/interfaces.md), checked on the source (an AST
walk, nothing is imported):

- no import cycle anywhere in the project (lazy imports inside functions count: they are how
  cycles hide);
- the core (blender_animate/) imports the standard library, numpy and itself (relatively) only;
- nothing Blender-free imports Blender: not the core, not the generator (backend/);
- operators/ and panels/ never import torch, diffusers or the generator (backend);
- the UI (panels/) never imports an operator (it names them by idname): only the bpy adapter
  (operators/adapter/), the core and itself;
- the adapter imports neither the operators nor the UI, and operators never import the UI;
- the product never imports the training code (backend/training/, left out of the extension zip).
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
PROJECT = ("blender_animate", "backend", "operators", "panels")


def imports(path: Path, root: Path = ROOT) -> list[tuple[int, str, bool]]:
    """(line, module, relative) for every import in `path`; relative imports are resolved against
    the file's package (`root`, the repository root, is the extension's top-level package). For
    `from pkg import name`, `pkg.name` is given when it is a module or package under `root`."""
    package = list(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            relative = node.level > 0
            if relative:
                if node.level - 1 > len(package):
                    raise AssertionError(f"{path}:{node.lineno}: relative import above the extension root")
                base = ".".join(
                    package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])
                )
            else:
                base = node.module
            names = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
            submodules = [n for n in names if _source(n, root) is not None]
            if node.module or not relative:
                found.append((node.lineno, base, relative))
            found += [(node.lineno, n, relative) for n in submodules if n != base]
    return found


def _source(module: str, root: Path) -> Path | None:
    """The file of a project module (a module file or a package's __init__.py), None otherwise."""
    path = root.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(folder: str, root: Path = ROOT) -> list[Path]:
    files = sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no Python files under {folder}/"
    return files


def ids(files):
    return [str(p.relative_to(ROOT)) for p in files]


def top(module: str) -> str:
    return module.split(".")[0]


def import_graph(root: Path = ROOT, folders=PROJECT) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in the file)."""
    graph: dict[str, set[str]] = {}
    for folder in folders:
        if not (root / folder).is_dir():
            continue
        for path in sources(folder, root):
            targets = set()
            for _, module, _ in imports(path, root):
                if top(module) in folders and _source(module, root) is not None:
                    targets.add(module)
            graph[module_name(path, root)] = targets - {module_name(path, root)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt) and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def layer_problems(path: Path, root: Path = ROOT) -> list[str]:
    """What `path` imports against the layering rules of the Blender side and the generator."""
    name = module_name(path, root)
    bad = []
    for line, module, _ in imports(path, root):
        if (
            name.startswith("panels")
            and module.startswith("operators.")
            and not module.startswith("operators.adapter")
        ):
            bad.append(f"line {line}: the UI imports the operator module {module} (name it by idname)")
        if name.startswith("operators.adapter") and (
            module.startswith("panels")
            or (module.startswith("operators.") and not module.startswith("operators.adapter"))
        ):
            bad.append(
                f"line {line}: the bpy adapter imports {module} (operators and the UI use the adapter)"
            )
        if (
            name.startswith("operators")
            and not name.startswith("operators.adapter")
            and module.startswith("panels")
        ):
            bad.append(f"line {line}: an operator imports the UI module {module}")
        if not name.startswith("backend.training") and module.startswith("backend.training"):
            bad.append(f"line {line}: the product imports the training code {module}")
    return bad


def test_there_is_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


ALL = [p for folder in PROJECT for p in sources(folder)]


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_layers(path):
    bad = layer_problems(path)
    assert not bad, f"{path.relative_to(ROOT)}: {bad}"


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


BLENDER_FREE = sources("blender_animate") + sources("backend")


@pytest.mark.parametrize("path", BLENDER_FREE, ids=ids(BLENDER_FREE))
def test_blender_free_code_never_imports_blender(path):
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
    (pkg / "compat.py").write_text("")
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
        ("torch", False),
        ("diffusers", False),
    ]


def _tree(tmp_path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for folder in {p.parent for p in tmp_path.rglob("*.py")}:
        (folder / "__init__.py").touch()
    return tmp_path


def test_a_planted_cycle_is_found_also_through_a_lazy_import(tmp_path):
    root = _tree(
        tmp_path,
        {
            "operators/export_job.py": "from ..panels import preferences\n",
            "panels/preferences.py": "def draw():\n    from ..operators import check_generator\n",
            "operators/check_generator.py": "from . import export_job\n",
            "operators/other.py": "from . import export_job\n",
        },
    )
    cycle = find_cycle(import_graph(root))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert set(cycle) == {"operators.export_job", "panels.preferences", "operators.check_generator"}
    (root / "panels" / "preferences.py").write_text("def draw():\n    pass\n")
    assert find_cycle(import_graph(root)) is None


def test_a_panel_importing_an_operator_is_refused(tmp_path):
    root = _tree(
        tmp_path,
        {
            "panels/sidebar.py": "from ..operators import generate\nfrom ..operators.adapter import runs\n",
            "operators/generate.py": "from .adapter import runs\n",
            "operators/adapter/runs.py": "def f():\n    from .. import generate\n",
            "backend/modes/preview.py": "from ..training import data\n",
        },
    )
    sidebar = layer_problems(root / "panels" / "sidebar.py", root)
    assert len(sidebar) == 1 and "operators.generate" in sidebar[0]  # the adapter is allowed
    assert layer_problems(root / "operators" / "generate.py", root) == []
    assert "operators.generate" in layer_problems(root / "operators" / "adapter" / "runs.py", root)[0]
    assert "training" in layer_problems(root / "backend" / "modes" / "preview.py", root)[0]
