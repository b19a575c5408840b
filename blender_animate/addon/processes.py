"""Child processes in a process group of their own, stopped the same way everywhere (stdlib only).

The generator client, the doctor check and the environment build start their children with
`new_process_group()` (a new session on POSIX, a new process group on Windows), so that stopping a
child also ends whatever it started (pip's build processes, torch's workers): `signal_group`
signals the whole group, `stop_group` asks it to end (SIGTERM), then ends it (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess

SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL


def new_process_group() -> dict:
    """Popen keyword arguments that start the child in its own process group (a new session on
    POSIX), so that `signal_group` ends it together with anything it started."""
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)}


def signal_group(proc: subprocess.Popen, sig=SIGKILL) -> None:
    """Send `sig` to the process group `proc` leads (started with `new_process_group`); on Windows,
    terminate (SIGTERM) or kill the process itself. A process already gone is not an error."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == signal.SIGTERM:
            proc.terminate()
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def stop_group(proc: subprocess.Popen, grace: float = 2.0) -> int | None:
    """Stop `proc`'s group: SIGTERM, then SIGKILL when the leader has not exited after `grace`
    seconds (0: SIGKILL at once). The group is killed in the end either way, so nothing the child
    started outlives it. Returns the leader's exit status (None if it could not be reaped)."""
    if grace > 0 and proc.poll() is None:
        signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    signal_group(proc, SIGKILL)  # also the children that outlived their parent
    try:
        return proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        return None
