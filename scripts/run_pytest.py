"""Run pytest and leave with os._exit: bpy 4.5 can deadlock in a destructor at interpreter exit
(reference/blender-api-notes.md), and a hung test process would eat CI's time."""

import os
import sys

import pytest

code = pytest.main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
os._exit(int(code))
