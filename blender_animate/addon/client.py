"""Start the generator process for one job and follow it without blocking (stdlib only).

`GeneratorProcess(job_dir, python).start()` runs ``[python, "-m", "backend", "run", job_dir]``
(an argument list, never a shell) with the extension root as working directory and first on
PYTHONPATH, followed by any extra site-packages folders (Blender puts the wheels an extension
bundles in ``.../extensions/.local/lib/python3.X/site-packages``; a child process does not inherit
Blender's ``sys.path``, so those folders travel on PYTHONPATH). The child runs in its own process
group (a new session on POSIX) so that cancelling also ends anything it started.

Events (docs/interfaces.md) are dicts with an ``"event"`` key, read from the child's stdout by a
reader thread and handed out by ``poll()``, which never blocks. stderr goes to ``generator.log`` in
the job directory. Whatever happens, the last event a caller receives is exactly one terminal event,
``done`` or ``error``: a child that dies without saying why, an interpreter that does not exist or
lacks numpy/Pillow, or a cancelled run each become an ``error`` event with a message and a hint.
Client-side error kinds, beside the generator's own: ``missing_interpreter`` (the Python cannot be
started), ``crashed`` (the process ended without a done/error event).

With ``standby=True`` the run starts on the standby process that the previous one left ready
(blender_animate.addon.standby; the job folder goes to its stdin) when there is one for the same
Python, paths, arguments and environment, and a new standby is prepared once the run has ended.
Nothing else changes: the same events, log, exit codes and cancelling.

Cancelling is non-blocking and escalates: ``cancel()`` writes ``JOB/cancel`` at once; ``poll()`` then
sends SIGTERM to the process group after ``term_after`` seconds and SIGKILL after ``kill_after``
seconds if the process is still alive.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import standby as standbys
from .processes import SIGKILL, new_process_group, signal_group

LOG_NAME = "generator.log"
CANCEL_FILE = "cancel"  # same name as blender_animate.job.CANCEL_FILE (kept stdlib-only here)
TERMINAL_EVENTS = ("done", "error")
# Client-side error kinds after which a standby would fail the same way: none is prepared.
NO_STANDBY_AFTER = ("missing_interpreter", "missing_dependency", "invalid_job")
# Packages the preview generator cannot run without (module name -> what the user installs).
REQUIRED_MODULES = {"numpy": "numpy", "PIL": "Pillow"}

EXTENSION_ROOT = Path(__file__).resolve().parents[2]

HINT = (
    "Set the generator's Python in Preferences > Add-ons > Animate Anything (leave it empty to use "
    "Blender's own Python, which runs the preview with nothing installed)"
)


def extension_site_packages(paths=None) -> list[str]:
    """The folders on `paths` (default sys.path) where Blender extracts the wheels of installed
    extensions: ``<...>/extensions/.local/lib/pythonX.Y/site-packages``. Order is kept."""
    out = []
    for p in sys.path if paths is None else paths:
        parts = Path(p).parts
        if "site-packages" in parts and ".local" in parts and "extensions" in parts:
            if parts.index("extensions") < parts.index(".local") and p not in out:
                out.append(p)
    return out


def _error(kind: str, message: str, hint: str = "") -> dict:
    return {"event": "error", "kind": kind, "message": message, "hint": hint, "origin": "client"}


def child_environment(extension_root=None, extra_paths=(), env: dict | None = None) -> dict:
    """The environment of a ``python -m backend ...`` child: `env` (default os.environ) with
    PYTHONPATH = the extension root, then `extra_paths` (bundled wheels); unbuffered UTF-8 output;
    no PYTHONHOME (Blender may set it for its own Python, never right for another one)."""
    out = dict(os.environ if env is None else env)
    root = Path(extension_root or EXTENSION_ROOT).resolve()
    out["PYTHONPATH"] = os.pathsep.join([str(root), *(str(p) for p in extra_paths)])
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONIOENCODING"] = "utf-8"
    out.pop("PYTHONHOME", None)
    return out


def interpreter_problem(python: str) -> dict | None:
    """A ``missing_interpreter`` error event when `python` is a path that does not exist or is not an
    executable file; None otherwise (a bare command name is left to the system's PATH)."""
    p = Path(python)
    if os.sep in python or (os.altsep and os.altsep in python):
        if not p.exists():
            return _error("missing_interpreter", f"the generator's Python {python} does not exist", HINT)
        if p.is_dir() or not os.access(p, os.X_OK):
            return _error(
                "missing_interpreter", f"the generator's Python {python} is not an executable file", HINT
            )
    return None


class GeneratorProcess:
    """One run of ``python -m backend run JOB``.

    Args:
        job_dir: the exported job directory (must exist; the log is written there).
        python: the interpreter to run; default the one running this code (Blender's own Python).
        extension_root: folder holding ``backend/`` and ``blender_animate/``; default this package's parent.
        extra_paths: folders appended to PYTHONPATH after the extension root (bundled wheels).
        args: extra arguments after ``run JOB`` (e.g. ``["--device", "cpu"]``).
        env: the base environment (default os.environ); see `child_environment`.
        term_after, kill_after: seconds after ``cancel()`` before SIGTERM, then SIGKILL.
        standby: start on a matching standby process when there is one, and prepare the next
            when the run ends (see the module docstring). `warm` then says which way it started.
    """

    def __init__(
        self,
        job_dir,
        python: str | None = None,
        *,
        extension_root=None,
        extra_paths=(),
        args=(),
        env: dict | None = None,
        term_after: float = 1.5,
        kill_after: float = 5.0,
        standby: bool = False,
    ):
        self.job_dir = Path(job_dir).resolve()
        self.python = str(python) if python else sys.executable
        self.extension_root = Path(extension_root or EXTENSION_ROOT).resolve()
        self.extra_paths = [str(p) for p in extra_paths]
        self.args = [str(a) for a in args]
        self.base_env = dict(os.environ if env is None else env)
        self.term_after = term_after
        self.kill_after = kill_after
        self.log_path = self.job_dir / LOG_NAME
        self.standby = standby
        self.warm = False  # started on a standby process
        self.mode: str | None = None  # the job's mode, from the started event
        self.size: tuple[int, int] | None = None  # its frames' (width, height), from the same

        self.proc: subprocess.Popen | None = None
        self.result: dict | None = None  # the terminal event once delivered
        self.cancel_requested_at: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self._log = None
        self._pending: list[dict] = []
        self._exited_at: float | None = None
        self._signals_sent: list[str] = []
        self._reader_done = False

    # ------------------------------------------------------------------ state
    @property
    def finished(self) -> bool:
        """True once the terminal event has been handed out by poll()."""
        return self.result is not None

    @property
    def running(self) -> bool:
        return self.proc is not None and not self.finished

    def command(self) -> list[str]:
        return [self.python, "-m", "backend", "run", str(self.job_dir), *self.args]

    def standby_command(self) -> list[str]:
        return [self.python, "-m", "backend", "standby", *self.args]

    def environment(self) -> dict:
        return child_environment(self.extension_root, self.extra_paths, self.base_env)

    # ------------------------------------------------------------------ start
    def start(self) -> GeneratorProcess:
        """Start the process. Never raises for a bad interpreter: that becomes an error event."""
        if self.proc is not None or self._pending:
            raise RuntimeError("GeneratorProcess.start() called twice")
        if not self.job_dir.is_dir():
            self._pending.append(
                _error("invalid_job", f"the job folder {self.job_dir} does not exist", "Export the job again")
            )
            return self
        problem = interpreter_problem(self.python)
        if problem:
            self._pending.append(problem)
            return self
        try:
            (self.job_dir / CANCEL_FILE).unlink(missing_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed when the run ends)
        except OSError as exc:
            message = f"cannot write in the job folder {self.job_dir}: {exc}"
            self._pending.append(_error("invalid_job", message, "Pick an Output folder you can write to"))
            return self
        if self.standby:
            self.proc = standbys.take(
                self.standby_command(), self.extension_root, self.environment(), self.job_dir
            )
        if self.proc is not None:
            self.warm = True
            self._close_log()  # created empty; the standby appends to it
        else:
            self._start_cold()
        if self.proc is not None:
            self._reader = threading.Thread(
                target=self._read_stdout, name="animate-anything-events", daemon=True
            )
            self._reader.start()
        return self

    def _start_cold(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=str(self.extension_root),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                **new_process_group(),
            )
        except OSError as exc:
            self._close_log()
            self._pending.append(
                _error(
                    "missing_interpreter",
                    f"cannot start the generator's Python {self.python}: {exc}",
                    HINT,
                )
            )

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = None
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                event = {"event": "log", "message": line}
            elif event["event"] == "ready":  # a standby's first line, before its job
                continue
            elif event["event"] == "started":
                self._started(event)
            self._queue.put(event)
        self._queue.put(None)  # EOF marker

    def _started(self, event: dict) -> None:
        """The job's mode and frame size from its started event (for the next standby)."""
        if isinstance(event.get("mode"), str):
            self.mode = event["mode"]
        size = event.get("width"), event.get("height")
        if all(isinstance(v, int) and v > 0 for v in size):
            self.size = size

    # ------------------------------------------------------------------ follow
    def poll(self) -> list[dict]:
        """Events that arrived since the last call (never blocks). After the terminal event has
        been returned, returns []."""
        if self.finished:
            return []
        events, self._pending = self._pending, []
        if self.proc is None:  # never started: the pending error is terminal
            return self._deliver(events)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._reader_done = True
                continue
            events.append(item)
        self._advance_cancel()
        code = self.proc.poll()
        if code is not None and self._exited_at is None:
            self._exited_at = time.monotonic()
        if code is not None and self._reader_done:
            return self._deliver(events, exited=True)
        if code is not None and time.monotonic() - self._exited_at > 2.0:
            # The process is gone but something it started still holds stdout open: end the group.
            self._signal_group(SIGKILL)
        return self._deliver(events)

    def _deliver(self, events: list[dict], exited: bool = False) -> list[dict]:
        out = []
        for event in events:
            out.append(event)
            if event.get("event") in TERMINAL_EVENTS:
                self._finish(event)
                return out  # nothing after the terminal event
        if exited:
            final = self._exit_error()
            out.append(final)
            self._finish(final)
        return out

    def _finish(self, event: dict) -> None:
        """The run is over for the caller. A process still alive after its final event gets a
        moment to exit; if it lingers, a watchdog thread ends its group (no orphans, no blocking)."""
        self.result = event
        if self.proc is None:
            return
        if self.proc.poll() is None:
            threading.Thread(target=self._reap, name="animate-anything-reaper", daemon=True).start()
        self._close_log()
        if self.standby and event.get("kind") not in NO_STANDBY_AFTER:
            # The next Generate most likely uses this mode and size again.
            self.prepare_standby(self.mode, self.size)

    def prepare_standby(self, mode: str | None = None, size: tuple[int, int] | None = None) -> None:
        """Have a standby ready for runs like this one (same Python, paths, arguments and
        environment), warmed for `mode` when it is a model mode, with heap reserved for frames of
        `size` (width, height) when given (blender_animate.addon.standby)."""
        warm = standbys.warm_arguments(mode, size)
        standbys.prepare(self.standby_command(), self.extension_root, self.environment(), warm)

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=self.kill_after)
        except subprocess.TimeoutExpired:
            self._signal_group(SIGKILL)
            self.proc.wait()

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal)."""
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float | None = None, interval: float = 0.05, on_event=None) -> dict:
        """Block until the terminal event (for background mode and scripts). `on_event(event)` is
        called for every event. On timeout the run is cancelled and the cancel error returned."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if self.finished:
                break
            if deadline is not None and time.monotonic() > deadline and self.cancel_requested_at is None:
                self.cancel()
            time.sleep(interval)
        return self.result

    # ------------------------------------------------------------------ cancel
    def cancel(self) -> None:
        """Ask the run to stop (non-blocking). Keep calling poll(): it escalates to SIGTERM and
        SIGKILL and delivers the final ``error`` event of kind ``cancelled``."""
        if self.finished or self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        if self.proc is None:
            return
        try:
            (self.job_dir / CANCEL_FILE).write_text("cancelled from Blender\n")
        except OSError:
            self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """End the whole process group now (Blender quitting, the add-on being disabled)."""
        if self.proc is not None and self.proc.poll() is None:
            self.cancel_requested_at = self.cancel_requested_at or time.monotonic()
            self._signal_group(SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _advance_cancel(self) -> None:
        if self.cancel_requested_at is None or self.proc is None or self.proc.poll() is not None:
            return
        elapsed = time.monotonic() - self.cancel_requested_at
        if elapsed >= self.kill_after and "KILL" not in self._signals_sent:
            self._signal_group(SIGKILL)
            self._signals_sent.append("KILL")
        elif elapsed >= self.term_after and "TERM" not in self._signals_sent:
            self._signal_group(signal.SIGTERM)
            self._signals_sent.append("TERM")

    def _signal_group(self, sig) -> None:
        if self.proc is not None:
            signal_group(self.proc, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ diagnosis
    def log_tail(self, max_lines: int = 12) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-max_lines:])

    def _exit_error(self) -> dict:
        """The error event for a process that ended without a done/error event."""
        code = self.returncode
        tail = self.log_tail()
        if self.cancel_requested_at is not None:
            return _error("cancelled", "generation was cancelled; nothing was imported", "")
        missing = re.findall(r"No module named '([^'.]+)", tail)
        for module in missing:
            if module in REQUIRED_MODULES:
                needed = ", ".join(REQUIRED_MODULES.values())
                return _error(
                    "missing_dependency",
                    f"the generator's Python {self.python} cannot import {REQUIRED_MODULES[module]} "
                    f"(the preview needs {needed})",
                    f"{HINT}, or install them there: {self.python} -m pip install numpy Pillow",
                )
            if module in ("backend", "blender_animate"):
                return _error(
                    "missing_dependency",
                    f"the generator's Python {self.python} cannot find the extension's '{module}' package "
                    f"in {self.extension_root}",
                    "Reinstall the extension; if the Python is an isolated one (-I), pick a normal one",
                )
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        last = tail.splitlines()[-1] if tail else "nothing in the log"
        return _error(
            "crashed",
            f"the generator stopped before finishing ({how}); last log line: {last}",
            f"Nothing was imported. See the log {self.log_path}; out-of-memory kills show up as SIGKILL",
        )

    def __del__(self):  # never leave an orphan behind when the object is dropped
        try:
            if self.proc is not None and self.proc.poll() is None:
                self._signal_group(SIGKILL)
            self._close_log()
        except Exception:
            pass
