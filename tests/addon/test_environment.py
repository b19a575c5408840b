"""The generator-environment builder behind the preferences button (blender_animate.addon), without
Blender: the argument lists, the offline refusal, and real background processes (a venv + pip with
a requirements file that needs no network), failure and cancel."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env_module():
    from blender_animate.addon import environment

    return environment


def test_commands_are_argument_lists(env_module, tmp_path):
    cmds = env_module.environment_commands("/blender/python3.11", tmp_path / "env", "/ext/req.txt", "linux")
    assert cmds == [
        ["/blender/python3.11", "-m", "venv", str(tmp_path / "env")],
        [str(tmp_path / "env" / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        + ["-r", "/ext/req.txt"],
    ]
    win = env_module.environment_commands("C:/B/python.exe", "C:/env dir", "C:/req.txt", "win32")
    assert win[1][0] == str(Path("C:/env dir") / "Scripts" / "python.exe")
    assert win[1][win[1].index("--extra-index-url") + 1].startswith("https://download.pytorch.org/whl/cu")


def test_requirements_file_lists_the_generator_packages():
    text = (ROOT / "backend" / "requirements-generator.txt").read_text()
    names = {line.split(">")[0].split("=")[0].split("<")[0].strip() for line in text.splitlines()}
    expected = {"torch", "diffusers", "transformers", "accelerate", "safetensors", "av"}
    assert expected | {"sentencepiece", "protobuf"} <= names


def test_offline_is_refused_with_the_setting_to_change(env_module):
    assert env_module.offline_problem(True) is None
    assert "Preferences > System > Network" in env_module.offline_problem(False)


def test_creates_a_venv_and_runs_pip_with_a_log(env_module, tmp_path):
    req = tmp_path / "req.txt"
    req.write_text("# no packages: pip needs no network\n")
    venv = tmp_path / "generator-env"
    build = env_module.EnvironmentBuild(
        env_module.environment_commands(sys.executable, venv, req), tmp_path / "generator-env.log"
    ).start()
    assert build.state == "running" and not build.finished
    assert build.wait(timeout=120) == "done", (build.message, (tmp_path / "generator-env.log").read_text())
    assert build.progress == 1.0 and build.step == 2
    assert env_module.venv_python(venv).exists()
    log = (tmp_path / "generator-env.log").read_text()
    assert "-m venv" in log and "-m pip install" in log and log.rstrip().endswith("# done")


def test_a_failing_step_stops_and_names_the_log(env_module, tmp_path):
    cmds = [
        [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
        [sys.executable, "-c", f"open({str(tmp_path / 'second-ran')!r}, 'w')"],
    ]
    build = env_module.EnvironmentBuild(cmds, tmp_path / "x.log").start()
    assert build.wait(timeout=30) == "failed"
    assert "exited with code 3" in build.message and str(tmp_path / "x.log") in build.message
    assert "boom" in (tmp_path / "x.log").read_text()
    assert build.step == 0 and not (tmp_path / "second-ran").exists()


def test_cancel_stops_the_running_process(env_module, tmp_path):
    build = env_module.EnvironmentBuild(
        [[sys.executable, "-c", "import time; time.sleep(60)"]], tmp_path / "c.log"
    )
    build.start()
    assert not build.poll()
    proc = build._proc
    build.cancel()
    assert build.state == "cancelled" and proc.poll() is not None
    assert build.poll() is True  # finished stays finished


def test_cancel_also_ends_what_the_step_started(env_module, tmp_path):
    """pip starts build processes of its own: cancelling must end the whole group, not only pip."""
    pid_file = tmp_path / "grandchild.pid"
    spawn = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    build = env_module.EnvironmentBuild([[sys.executable, "-c", spawn]], tmp_path / "g.log").start()
    deadline = time.monotonic() + 20
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline and not build.poll()
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    build.cancel()
    assert build.state == "cancelled"
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the step's own child outlived the cancel"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its dead parent's reaper) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
