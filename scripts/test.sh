#!/usr/bin/env bash
# Set up (scripts/setup.sh --all-blenders) and run everything CI runs: ruff, the whole suite on
# bpy 5.0.1 (.venv), then the Blender-facing tests (the built zip installed and enabled, the
# zero-install preview in that Blender's own Python: numpy + Pillow only) again on bpy 4.5 LTS
# (.venv45), 5.2 LTS and 5.3 (.venv52, .venv53: Python 3.13, numpy 2). Each run prints its version.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --all-blenders
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/run_pytest.py "$@"
for venv in .venv45 .venv52 .venv53; do
  if [ ! -x "$venv/bin/python" ]; then
    [ "${CI:-}" = "true" ] && { echo "test: $venv is missing (scripts/setup.sh --all-blenders)" >&2; exit 1; }
    echo "test: $venv is missing, skipped (no Python 3.13 here)" >&2
    continue
  fi
  echo "test: Blender-facing tests on $("$venv/bin/python" -c 'import importlib.metadata as m; print("bpy", m.version("bpy"))')"
  "$venv/bin/python" scripts/run_pytest.py -m blender tests/blender "$@"
done
