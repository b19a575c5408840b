"""Validate the extension and build one installable zip per platform into build/.

Uses the extension command line tool that ships inside the bpy wheel
(`bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py`), so no Blender binary is needed.
Runs `validate`, then `build --split-platforms`, fetching missing wheels first
(scripts/fetch_wheels.py). Prints the zip paths, one per line, and exits non-zero on any failure.

Usage: `python scripts/build_extension.py [--output-dir DIR] [--no-fetch]`
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def find_cli() -> Path:
    """blender_ext.py inside the installed bpy wheel (the newest Blender version folder). Located
    without importing bpy: importing it is slow, and bpy 4.5 can hang at interpreter exit."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise SystemExit("build_extension: the bpy module is not installed; run scripts/setup.sh")
    base = Path(spec.origin).resolve().parent
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"build_extension: no blender_ext.py under {base}")
    return found[-1]


def run_cli(cli: Path, *args: str) -> None:
    cmd = [sys.executable, str(cli), *args]
    result = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    if result.stdout.strip():
        print(result.stdout.strip())
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"build_extension: `{' '.join(args[:1])}` failed (exit {result.returncode})")


def build(output_dir: Path, fetch: bool = True) -> list[Path]:
    """Validate and build; return the zips written (one per platform in the manifest)."""
    if fetch:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_wheels.py")], check=True)
    cli = find_cli()
    output_dir.mkdir(parents=True, exist_ok=True)
    before = {p: p.stat().st_mtime_ns for p in output_dir.glob("*.zip")}
    run_cli(cli, "validate", str(ROOT))
    run_cli(cli, "build", "--source-dir", str(ROOT), "--output-dir", str(output_dir), "--split-platforms")
    zips = sorted(p for p in output_dir.glob("*.zip") if before.get(p) != p.stat().st_mtime_ns)
    if not zips:
        raise SystemExit(f"build_extension: the build wrote no zip into {output_dir}")
    return zips


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--no-fetch", action="store_true", help="do not download missing wheels")
    args = parser.parse_args(argv)
    for path in build(args.output_dir.resolve(), fetch=not args.no_fetch):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
