#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   - the system libraries the bpy module needs (installed with apt when missing and we can),
#   - .venv: bpy 5.0.1, the CPU torch, diffusers and the rest (requirements.txt),
#   - .venv45: bpy 4.5 LTS for the Blender-facing tests (only with --with-45),
#   - wheels/: the Pillow wheels the extension bundles (one per platform).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
WITH_45=0
for arg in "$@"; do [ "$arg" = "--with-45" ] && WITH_45=1; done

# System libraries for `import bpy` (X11/GL client libraries, EGL for Workbench/EEVEE).
need_pkgs=()
for pair in libX11.so.6:libx11-6 libXrender.so.1:libxrender1 libXfixes.so.3:libxfixes3 libXi.so.6:libxi6 \
            libxkbcommon.so.0:libxkbcommon0 libXext.so.6:libxext6 libSM.so.6:libsm6 libGL.so.1:libgl1 \
            libEGL.so.1:libegl1; do
  lib=${pair%%:*}; pkg=${pair##*:}
  ldconfig -p 2>/dev/null | grep -q "$lib" || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing system libraries for bpy: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need_pkgs[@]}" libegl-mesa0 libgl1-mesa-dri
fi

make_venv() {  # make_venv DIR REQUIREMENTS
  local dir=$1 req=$2
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  local stamp="$dir/.requirements.sha"
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $req into $dir (bpy is ~400 MB; a few minutes the first time)"
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q -r "$req"
    echo "$want" > "$stamp"
  fi
}
make_venv .venv requirements.txt
[ "$WITH_45" = 1 ] && make_venv .venv45 requirements-bpy45.txt

# Pillow wheels the extension bundles (zero-install preview); see blender_manifest.toml.
.venv/bin/python scripts/fetch_wheels.py
echo "setup: ready (.venv$([ "$WITH_45" = 1 ] && echo ', .venv45'))"
