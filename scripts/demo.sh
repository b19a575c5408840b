#!/usr/bin/env bash
# The main job in one command: set up (the same set-up as the tests), then run the demo: an example
# scene built in code, Generate in preview mode through the real extension and generator process,
# the result imported, demo.blend + video.mp4 + flow.mp4 + contact_sheet.png in ./output/demo.
#   bash scripts/demo.sh [--output DIR] [--frames N] [--width W --height H]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
