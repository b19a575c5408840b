"""Stopping a run within a second or two: SIGTERM/SIGINT, a `JOB/cancel` file, or the parent dying.

How it works: a signal handler (main thread) and a watcher thread share a `CancelState`. The
watcher polls for the cancel file every `poll` seconds and, when it appears, interrupts the main
thread (`_thread.interrupt_main`), whose handler raises `Cancelled` at the next bytecode. Modes
also call `ctx.check_cancel()` between steps. If the main thread is stuck in one long native
call and has not finished within `grace` seconds of the request, the watcher ends the process
itself: it runs the registered emergency cleanup (error event, partial output removed) and
calls `os._exit(3)`. The handler never raises inside the import machinery (a C extension's
module init, e.g. OpenCV's, prints what an import under it raises, and a half-run import is
left behind): it records the request, and the watcher interrupts the main thread again each
`poll` until a raise has landed.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import EXIT_CANCELLED, Cancelled


class CancelState:
    """Shared flag: `request(reason)` from anywhere, `check()` raises Cancelled once requested."""

    def __init__(self):
        self._event = threading.Event()
        self.reason = ""
        self.requested_at = 0.0
        # armed: a request raises in the main thread. Disarmed once the output is in place, so a
        # late cancel cannot turn a finished run into a cancelled one.
        self.armed = True
        self._raised = False
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str) -> bool:
        """Record a cancel request; returns True for the first request."""
        with self._lock:
            if self._event.is_set():
                return False
            self.reason = reason
            self.requested_at = time.monotonic()
            self._event.set()
            return True

    def check(self) -> None:
        """Raise Cancelled if a cancel was requested and the run is still armed."""
        if self._event.is_set() and self.armed:
            self._raised = True
            raise Cancelled(f"cancelled ({self.reason})")

    @property
    def raised(self) -> bool:
        """Whether Cancelled has been raised in the main thread (by check or raise_once)."""
        return self._raised

    def raise_once(self) -> None:
        """Used by the signal handler: raise Cancelled the first time only, so cleanup code that
        runs after the first raise is not interrupted again."""
        if self.armed and not self._raised:
            self._raised = True
            raise Cancelled(f"cancelled ({self.reason})")


class CancelWatcher:
    """Installs signal handlers and a daemon thread that watches `cancel_file` and the parent.

    `emergency(reason)` is called from the watcher thread when the main thread has not stopped
    within `grace` seconds of a request; the process then exits with code 3. `watch_parent`
    (POSIX): cancel when the parent process changes (it ended and this one was re-parented) or
    was already init (pid 1) when the process started; `parent_pid` is the parent recorded at
    start-up (default: now)."""

    def __init__(
        self,
        state: CancelState,
        cancel_file: Path,
        *,
        emergency: Callable[[str], None] | None = None,
        poll: float = 0.1,
        grace: float = 1.5,
        watch_parent: bool = False,
        parent_pid: int | None = None,
    ):
        self.state = state
        self.cancel_file = Path(cancel_file)
        self.emergency = emergency
        self.poll = poll
        self.grace = grace
        self.watch_parent = watch_parent
        self._parent = os.getppid() if parent_pid is None else parent_pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cancel-watcher", daemon=True)
        self._old_handlers: dict[int, object] = {}

    def start(self) -> CancelWatcher:
        for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
            if sig is None:
                continue
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (ValueError, OSError):  # not the main thread, or not supported on this platform
                pass
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError, TypeError):
                pass

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.state.request(name)
        if not _uninterruptible(frame):
            self.state.raise_once()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            if not self.state.requested:
                reason = None
                if self.cancel_file.exists():
                    reason = "cancel file"
                elif self.watch_parent and (os.getppid() != self._parent or self._parent == 1):
                    reason = "the parent process ended"
                if reason and self.state.request(reason) and self.state.armed:
                    try:
                        _thread.interrupt_main(signal.SIGINT)
                    except (RuntimeError, ValueError, TypeError):
                        pass
            elif (
                self.state.armed
                and not self.state.raised
                and time.monotonic() - self.state.requested_at <= self.grace
            ):
                try:  # the handler deferred its raise (an import was running): try again
                    _thread.interrupt_main(signal.SIGINT)
                except (RuntimeError, ValueError, TypeError):
                    pass
            elif self.state.armed and time.monotonic() - self.state.requested_at > self.grace:
                if self.emergency is not None:
                    try:
                        self.emergency(self.state.reason)
                    finally:
                        os._exit(EXIT_CANCELLED)
                os._exit(EXIT_CANCELLED)


# The kernel loader: numba compiling or loading its cache; an exception raised inside leaves
# llvmlite objects half made (a traceback at their collection) and the kernel cached as missing.
_KERNEL_LOADER = str(Path(__file__).with_name("compiled.py"))


def _uninterruptible(frame) -> bool:
    """Whether the main thread's `frame` runs where the signal handler must not raise: inside
    the import machinery (a frame of importlib._bootstrap on its stack) or the kernel loader.
    The request is then raised by the next check()."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or name == _KERNEL_LOADER:
            return True
        frame = frame.f_back
    return False
