"""Set-up shared by every test folder."""

import os
import shutil
import tempfile

# Blender keeps preferences and the wheels it syncs when an extension is enabled under the user's
# folder: tests must neither touch the real one nor share it with another test run. This runs
# before any test module imports bpy.
_BLENDER_USER = tempfile.mkdtemp(prefix="aa-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _BLENDER_USER


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_BLENDER_USER, ignore_errors=True)
