"""The preferences button that creates the generator environment, inside bpy: registered with the
extension, and refusing to download while Blender's online access is off (the bpy module's
default). The subprocess part is tested without Blender in tests/guided/test_environment.py."""

from __future__ import annotations

import sys
import time

import pytest

pytestmark = pytest.mark.blender


def test_create_environment_refuses_offline(extension, bpy_module, aa, tmp_path):
    bpy = bpy_module
    assert hasattr(bpy.types, "ANIMATE_ANYTHING_OT_create_environment")
    env = aa("operators.adapter.environments")
    assert aa("operators.create_environment").classes
    if bpy.app.online_access:
        pytest.skip("this Blender allows online access; the refusal cannot be shown")
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.animate_anything.create_environment(directory=str(tmp_path / "env"))
    assert not (tmp_path / "env").exists()
    assert str(env.default_environment_dir()).endswith(env.ENV_FOLDER)


def test_timer_follows_the_build_and_sets_the_generator_python(extension, bpy_module, aa, tmp_path):
    """The UI path (a bpy.app.timers function; timers never fire in the bpy module, so the test
    calls it): it polls until the build ends, then points the preferences at the new Python."""
    bpy = bpy_module
    env = aa("operators.adapter.environments")
    prefs = bpy.context.preferences.addons[extension.__name__].preferences
    fake_python = tmp_path / "env" / "bin" / "python"
    build = env.EnvironmentBuild([[sys.executable, "-c", "print('step one')"]], tmp_path / "env.log").start()
    tick = env._timer(build, fake_python)
    old = prefs.python_path
    try:
        for _ in range(400):
            interval = tick()
            if interval is None:
                break
            assert interval == env.POLL_INTERVAL
            time.sleep(0.02)
        assert build.state == "done" and interval is None
        assert prefs.python_path == str(fake_python)
    finally:
        prefs.python_path = old
