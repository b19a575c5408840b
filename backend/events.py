"""The event stream: one JSON object per line on the process's original stdout.

`Events.take_stdout()` moves the real stdout to a private file descriptor and points fd 1 (and
`sys.stdout`) at stderr, so stray prints of libraries (FFmpeg, torch, tqdm) cannot corrupt the
stream a client parses. Writes are serialised by a lock so a watcher thread may emit too.
"""

from __future__ import annotations

import json
import os
import sys
import threading


class Events:
    """Writes events as JSON lines to a binary stream, flushing after every line."""

    def __init__(self, stream=None):
        self._stream = stream
        self._lock = threading.Lock()
        self.ended = False  # True once a final event (done or error) was written

    @classmethod
    def take_stdout(cls) -> Events:
        """Claim the process's stdout for events; everything else printed goes to stderr."""
        sys.stdout.flush()
        try:
            fd = os.dup(1)
            os.dup2(2, 1)
            stream = os.fdopen(fd, "wb", buffering=0)
        except OSError:  # no real fd 1 (embedded interpreters): write through sys.stdout
            stream = sys.stdout.buffer
        sys.stdout = sys.stderr
        return cls(stream)

    def emit(self, event: str, *, final: bool = False, timeout: float = -1, **fields) -> bool:
        """Write `{"event": event, **fields}` as one line. `final` marks the run's last event; later
        final events are dropped (a run ends with exactly one done or error). Returns False when
        the event was dropped or the lock could not be taken within `timeout` seconds."""
        line = (json.dumps({"event": event, **fields}, default=str) + "\n").encode("utf-8")
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            if self.ended:
                return False
            if final:
                self.ended = True
            stream = self._stream if self._stream is not None else sys.stdout.buffer
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):  # the reader went away: keep running, nobody is listening
                return False
            return True
        finally:
            self._lock.release()
