"""The preferences button that creates the generator environment, inside bpy: registered with the
extension, and refusing to download while Blender's online access is off (the bpy module's
default). The subprocess part is tested without Blender in tests/guided/test_environment.py."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.blender


def test_create_environment_refuses_offline(extension, bpy_module, aa, tmp_path):
    bpy = bpy_module
    assert hasattr(bpy.types, "ANIMATE_ANYTHING_OT_create_environment")
    env = aa("operators.environment")
    assert env.bpy is not None and env.classes
    if bpy.app.online_access:
        pytest.skip("this Blender allows online access; the refusal cannot be shown")
    with pytest.raises(RuntimeError, match="online access"):
        bpy.ops.animate_anything.create_environment(directory=str(tmp_path / "env"))
    assert not (tmp_path / "env").exists()
    assert str(env.default_environment_dir()).endswith(env.ENV_FOLDER)
