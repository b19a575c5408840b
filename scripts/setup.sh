#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   - the system libraries the bpy module needs (installed with apt when missing and we can),
#   - .venv: bpy 5.0.1, the CPU torch, diffusers and the rest (requirements.txt),
#   - .venv45: bpy 4.5 LTS for the Blender-facing tests (only with --with-45 or --all-blenders),
#   - .venv52, .venv53: bpy 5.2 LTS and 5.3 on Python 3.13 (numpy 2) (only with --all-blenders):
#     the Python 3.13 comes from $PYTHON313, PATH (python3.13) or pyenv; when none can be had the
#     set-up says so in one line and fails under CI (CI=true), so CI never skips a version,
#   - wheels/: the Pillow wheels the extension bundles (one per platform and Python).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
WITH_45=0
WITH_313=0
for arg in "$@"; do
  case "$arg" in
    --with-45) WITH_45=1 ;;
    --all-blenders) WITH_45=1; WITH_313=1 ;;
    *) echo "setup: unknown option $arg (use --with-45 or --all-blenders)" >&2; exit 2 ;;
  esac
done

is_py313() { [ -n "$1" ] && "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
find_python313() {  # prints a working Python 3.13 interpreter, or nothing
  local c root
  for c in "${PYTHON313:-}" "$(command -v python3.13 2>/dev/null)"; do
    is_py313 "$c" && { echo "$c"; return; }
  done
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for c in "$root"/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13 \
           /usr/local/bin/python3.13 /usr/bin/python3.13; do
    is_py313 "$c" && { echo "$c"; return; }
  done
}

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

make_venv() {  # make_venv DIR REQUIREMENTS [PYTHON]
  local dir=$1 req=$2 base=${3:-$PY}
  [ -x "$dir/bin/python" ] || "$base" -m venv "$dir"
  local stamp="$dir/.requirements.sha"
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $req into $dir (bpy is ~400 MB; a few minutes the first time)"
    "$dir/bin/python" -m pip install -q --upgrade pip
    # The bpy wheels are ~400 MB: resume a download the connection drops, and try once more.
    "$dir/bin/python" -m pip install -q --resume-retries 20 -r "$req" ||
      "$dir/bin/python" -m pip install -q --resume-retries 20 -r "$req"
    echo "$want" > "$stamp"
  fi
}
make_venv .venv requirements.txt
[ "$WITH_45" = 1 ] && make_venv .venv45 requirements-bpy45.txt
ready=".venv"
if [ "$WITH_45" = 1 ]; then ready="$ready, .venv45"; fi
if [ "$WITH_313" = 1 ]; then
  PY313=$(find_python313 || true)
  if [ -n "$PY313" ]; then
    make_venv .venv52 requirements-bpy52.txt "$PY313"
    make_venv .venv53 requirements-bpy53.txt "$PY313"
    ready="$ready, .venv52, .venv53 ($PY313)"
  elif [ "${CI:-}" = "true" ]; then
    echo "setup: no Python 3.13 found (set PYTHON313, or put python3.13 on PATH or in pyenv): bpy 5.2/5.3 cannot be tested" >&2
    exit 1
  else
    echo "setup: no Python 3.13 found (set PYTHON313, or put python3.13 on PATH or in pyenv): skipping bpy 5.2/5.3" >&2
  fi
fi

# Pillow wheels the extension bundles (zero-install preview); see blender_manifest.toml.
.venv/bin/python scripts/fetch_wheels.py
echo "setup: ready ($ready)"
