"""Download the wheels blender_manifest.toml bundles into wheels/ when they are missing.

The manifest's `wheels` list is the one source of truth: for each file name this runs
`pip download --no-deps --only-binary=:all: --python-version X.Y --platform <tags> <name>==<version>`
with the Python version (cp311 -> 3.11, cp313 -> 3.13: Blender 4.5/5.0 and 5.1+) and the platform
tags read from the file name, then checks the file's SHA-256 against the table
below (a wheel that does not match is deleted and the script fails). Already present and valid
files are left alone, so a second run only checks. Usage: `python scripts/fetch_wheels.py`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# SHA-256 of every bundled wheel (from PyPI). Update together with the manifest.
SHA256 = {
    "pillow-11.3.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl": (
        "106064daa23a745510dabce1d84f29137a37224831d88eb4ce94bb187b1d7e5f"
    ),
    "pillow-11.3.0-cp311-cp311-win_amd64.whl": (
        "1a992e86b0dd7aeb1f053cd506508c0999d710a8f07b4c791c63843fc6a807ac"
    ),
    "pillow-11.3.0-cp311-cp311-macosx_11_0_arm64.whl": (
        "9c412fddd1b77a75aa904615ebaa6001f169b26fd467b4be93aded278266b288"
    ),
    "pillow-11.3.0-cp311-cp311-macosx_10_10_x86_64.whl": (
        "1cd110edf822773368b396281a2293aeb91c90a2db00d78ea43e7e861631b722"
    ),
    # Python 3.13: Blender 5.1, 5.2 LTS, 5.3.
    "pillow-11.3.0-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl": (
        "13f87d581e71d9189ab21fe0efb5a23e9f28552d5be6979e84001d3b8505abe8"
    ),
    "pillow-11.3.0-cp313-cp313-win_amd64.whl": (
        "0bce5c4fd0921f99d2e858dc4d4d64193407e1b99478bc5cacecba2311abde51"
    ),
    "pillow-11.3.0-cp313-cp313-macosx_11_0_arm64.whl": (
        "7db51d222548ccfd274e4572fdbf3e810a5e66b00608862f947b163e613b67dd"
    ),
    "pillow-11.3.0-cp313-cp313-macosx_10_13_x86_64.whl": (
        "ec1ee50470b0d050984394423d96325b744d55c701a439d2bd66089bff963d3c"
    ),
}


def manifest_wheels(root: Path = ROOT) -> list[Path]:
    """The wheel paths the manifest names, resolved against the extension root."""
    with open(root / "blender_manifest.toml", "rb") as fh:
        manifest = tomllib.load(fh)
    return [(root / rel).resolve() for rel in manifest.get("wheels", [])]


def parse_wheel_name(name: str) -> tuple[str, str, list[str]]:
    """(distribution, version, platform tags) of a wheel file name (PEP 427)."""
    parts = name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise ValueError(f"{name} is not a wheel file name")
    return parts[0], parts[1], parts[-1].split(".")


def python_version(name: str) -> str:
    """The Python version a CPython wheel is for, from its tag: cp311 -> "3.11", cp313 -> "3.13"."""
    tag = name[: -len(".whl")].split("-")[-3]
    if not (tag.startswith("cp3") and tag[3:].isdigit()):
        raise ValueError(f"{name} is not a CPython 3 wheel (python tag {tag})")
    return f"3.{tag[3:]}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check(path: Path) -> bool:
    """True when the file exists and matches its recorded hash; raise for an unknown wheel."""
    if path.name not in SHA256:
        raise SystemExit(f"fetch_wheels: {path.name} has no SHA-256 in scripts/fetch_wheels.py: add it")
    return path.is_file() and sha256(path) == SHA256[path.name]


def fetch(path: Path) -> None:
    dist, version, platforms = parse_wheel_name(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        cmd += ["--python-version", python_version(path.name), "--dest", tmp]
        for tag in platforms:
            cmd += ["--platform", tag]
        cmd.append(f"{dist}=={version}")
        subprocess.run(cmd, check=True)
        got = Path(tmp) / path.name
        if not got.is_file():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise SystemExit(f"fetch_wheels: pip downloaded {found}, not {path.name}")
        got.replace(path)


def main() -> int:
    wheels = manifest_wheels()
    failed = []
    for path in wheels:
        if check(path):
            continue
        print(f"fetch_wheels: downloading {path.name}")
        fetch(path)
        if not check(path):
            path.unlink(missing_ok=True)
            failed.append(path.name)
    if failed:
        print(f"fetch_wheels: SHA-256 mismatch for {failed}; the files were removed", file=sys.stderr)
        return 1
    print(f"fetch_wheels: {len(wheels)} wheels present in wheels/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
