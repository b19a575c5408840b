"""Failures a job can end with, their event kinds, exit codes and the hint a user can act on."""

from __future__ import annotations

import sys

KINDS = ("invalid_job", "missing_dependency", "missing_model", "out_of_memory", "cancelled", "internal")

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_INVALID_JOB = 2
EXIT_CANCELLED = 3

DEFAULT_HINTS = {
    "invalid_job": (
        "Export the job again from Blender (Animate Anything > Generate), or fix the file named above."
    ),
    "missing_dependency": (
        "Run `python -m backend doctor` with the generator's Python to see what is missing, install "
        "the generator environment (pip install -r requirements.txt) and set that Python in the "
        "add-on preferences."
    ),
    "missing_model": (
        "Set the model folder in the add-on preferences, or allow downloads there; "
        "`python -m backend doctor` lists the models it can find."
    ),
    "out_of_memory": (
        "Lower the resolution or the number of frames, set offload to 'model' or 'sequential' and dtype to "
        "bf16/fp16 in the preferences, or close other programs using the GPU."
    ),
    "cancelled": "The run was stopped on request; nothing was written to out/.",
    "internal": "This is a bug: keep the job directory and the generator's log (stderr) and report them.",
}


def exit_code(kind: str) -> int:
    """The process exit code for an error kind: 2 invalid job, 3 cancelled, 1 anything else."""
    return {"invalid_job": EXIT_INVALID_JOB, "cancelled": EXIT_CANCELLED}.get(kind, EXIT_FAILED)


class JobFailure(Exception):
    """A job ended with a failure a user can act on. `kind` is one of KINDS; `hint` says what to do
    (the kind's default hint when empty)."""

    def __init__(self, kind: str, message: str, hint: str = ""):
        if kind not in KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {KINDS}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint or DEFAULT_HINTS[kind]


class Cancelled(JobFailure):
    """The run was asked to stop (a JOB/cancel file, SIGTERM or SIGINT)."""

    def __init__(self, message: str = "cancelled", hint: str = ""):
        super().__init__("cancelled", message, hint)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for MemoryError and for torch's CUDA/MPS out-of-memory errors, without importing torch."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    if name in ("OutOfMemoryError", "OutOfMemoryException"):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "mps backend out of memory" in text)


def _is_job_error(exc: BaseException) -> bool:
    """An error of the core's validator (blender_animate.job.JobError), matched by type. Looked up
    in sys.modules, not imported: this module must load before numpy (a Python without numpy gets
    a clear error event), and an exception of a module that never loaded cannot be one of its."""
    job = sys.modules.get("blender_animate.job")
    return job is not None and isinstance(exc, job.JobError)


def classify(exc: BaseException) -> JobFailure:
    """Turn any exception a job raised into a JobFailure with the right kind and a useful hint."""
    if isinstance(exc, JobFailure):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Cancelled("interrupted")
    if _is_job_error(exc):
        return JobFailure("invalid_job", str(exc))
    if is_out_of_memory(exc):
        return JobFailure("out_of_memory", f"out of memory: {exc}".strip())
    if isinstance(exc, ModuleNotFoundError):
        name = exc.name or str(exc)
        return JobFailure("missing_dependency", f"the Python package {name!r} is not installed in {_exe()}")
    if isinstance(exc, ImportError):
        return JobFailure("missing_dependency", f"a Python package failed to import: {exc}")
    return JobFailure("internal", f"{type(exc).__name__}: {exc}")


def _exe() -> str:
    import sys

    return sys.executable or "this Python"
