#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run everything CI runs: ruff, the whole suite on bpy 5.0.1,
# and the Blender-facing tests again on bpy 4.5 LTS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-45
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/run_pytest.py "$@"
.venv45/bin/python scripts/run_pytest.py -m blender tests/blender "$@"
