"""The event stream stays parseable: stray prints (Python or native) go to stderr."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.backend.jobs import ROOT, backend_env

SCRIPT = """
import os, sys
from backend.events import Events
events = Events.take_stdout()
print("a library talking on stdout")
os.write(1, b"native code writing to fd 1\\n")
events.emit("progress", stage="s", step=1, total=2, message="half")
events.emit("done", final=True, outputs={})
events.emit("error", final=True, kind="internal", message="late", hint="")  # dropped: already ended
"""


def test_stray_output_goes_to_stderr_and_events_end_once():
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=backend_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events] == ["progress", "done"]
    assert "a library talking on stdout" in r.stderr and "native code" in r.stderr
