"""The live state of one generation, from the generator's events (stdlib only).

Kept in memory by the add-on (never in the .blend: a saved file must not say "running", and undo
must not bring back old progress). `RunState.apply(event)` turns each event of
``python -m backend run`` (docs/interfaces.md) into what the UI shows: `stage` ("flow 3/9"),
`fraction` (0..1), `warnings`; a terminal event ends the run with `state` "done", "failed" or
"cancelled" and a `message` + `hint` a user can act on.
"""

from __future__ import annotations

import time
from pathlib import Path

STATES = ("running", "done", "failed", "cancelled")


class RunState:
    """State: "running", then "done", "failed" or "cancelled"; `stage` and `fraction` say how far
    it got, `message` and `hint` how it ended. `python`: the interpreter that runs the generator
    (it decides the hint for a missing package)."""

    def __init__(self, job_dir, *, python: str = "", own_python: bool = True, warnings=()):
        self.job_dir = Path(job_dir)
        self.python = python
        self.own_python = own_python  # the generator runs in Blender's own Python
        self.state = "running"
        self.message = ""
        self.hint = ""
        self.summary: dict | None = None  # what the import made (set by the add-on)
        self.warnings: list[str] = list(warnings)
        self.stage = "starting"
        self.fraction = 0.0
        self.started_at = time.monotonic()
        self.log: list[str] = []  # lines the generator printed that are not events

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started_at

    def apply(self, event: dict) -> str | None:
        """Take one event. Returns "done" when the generator finished (the caller imports, then
        calls `end`), "ended" when the run ended with an error or a cancel, else None."""
        kind = event.get("event")
        if kind == "started":
            self.stage = "started"
        elif kind == "progress":
            total = max(1, int(event.get("total") or 1))
            step = min(max(0, int(event.get("step") or 0)), total)
            self.fraction = step / total
            self.stage = f"{event.get('stage', '')} {step}/{total}".strip()
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
        elif kind == "log":
            self.log.append(str(event.get("message", "")))
        elif kind == "done":
            return "done"
        elif kind == "error":
            self._error(event)
            return "ended"
        return None

    def _error(self, event: dict) -> None:
        kind = event.get("kind")
        message = str(event.get("message") or "the generator failed")
        hint = str(event.get("hint") or "")
        if kind == "cancelled":
            self.end("cancelled", "Generation cancelled: nothing was imported, the scene is unchanged")
            return
        if kind == "missing_dependency" and not self.own_python and "Blender's own" not in hint:
            hint += (
                " Or clear Generator Python in the add-on preferences: Blender's own Python runs the "
                "preview with nothing installed."
            )
        self.end("failed", message, hint.strip())

    def end(self, state: str, message: str, hint: str = "") -> None:
        if state not in STATES[1:]:
            raise ValueError(f"a run ends as one of {STATES[1:]}, not {state!r}")
        self.state, self.message, self.hint = state, message, hint
        if state == "done":
            self.fraction = 1.0
        self.stage = state

    def full_message(self) -> str:
        text = self.message
        if self.hint:
            text = text.rstrip(".") + f". {self.hint}"
        if self.state != "done":
            text += f" (job folder kept: {self.job_dir})"
        return text
