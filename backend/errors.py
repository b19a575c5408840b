"""Failures a job can end with, their event kinds, exit codes and the hint a user can act on."""

from __future__ import annotations

import errno
import sys
import traceback

KINDS = (
    "invalid_job",
    "busy",
    "cannot_write",
    "missing_dependency",
    "missing_model",
    "out_of_memory",
    "cancelled",
    "internal",
)

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_INVALID_JOB = 2  # also "busy": the job cannot run as it is (another run holds the folder)
EXIT_CANCELLED = 3

DEFAULT_HINTS = {
    "invalid_job": (
        "Export the job again from Blender (Animate Anything > Generate), or fix the file named above."
    ),
    "busy": (
        "Wait for the other run to end, or cancel it (create a file named `cancel` in the job folder), "
        "then run again. One run per job folder at a time."
    ),
    "cannot_write": (
        "Free some disk space, or make the job folder writable (or export the job to another folder), "
        "then run again. A previous out/ is kept as it was."
    ),
    "missing_dependency": (
        "Run `python -m backend doctor` with the generator's Python to see what is missing, install "
        "the generator environment (Preferences > Add-ons > Animate Anything > Create Generator "
        "Environment, or pip install -r backend/requirements-generator.txt from the extension "
        "folder) and set that Python in the add-on preferences."
    ),
    "missing_model": (
        "Set the model folder in the add-on preferences, or allow downloads there; "
        "`python -m backend doctor` lists the models it can find."
    ),
    "out_of_memory": (
        "Lower the resolution or the number of frames, set offload to 'model' or 'sequential' and dtype to "
        "bf16/fp16 in the preferences, or close other programs using the GPU."
    ),
    "cancelled": "The run was stopped on request; out/ is as it was before the run.",
    "internal": "This is a bug: keep the job directory and the generator's log (stderr) and report them.",
}


def exit_code(kind: str) -> int:
    """The process exit code for an error kind: 2 invalid job or busy, 3 cancelled, 1 anything else."""
    return {"invalid_job": EXIT_INVALID_JOB, "busy": EXIT_INVALID_JOB, "cancelled": EXIT_CANCELLED}.get(
        kind, EXIT_FAILED
    )


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


# errno values that mean "this folder cannot take the file", wherever they happen.
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
READ_ONLY = {errno.EROFS}
NO_PERMISSION = {errno.EACCES, errno.EPERM}


def write_failure(exc: OSError, folder) -> JobFailure:
    """A `cannot_write` failure for an OSError raised while writing into `folder`, in words: the
    disk is full, the folder is read-only, or it cannot be written (with the OS's reason)."""
    name = exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in DISK_FULL:
        message = (
            f"the disk is full: {name} could not be written ({reason})"
            if name
            else f"the disk is full: nothing more fits into {folder} ({reason})"
        )
    elif exc.errno in READ_ONLY:
        message = f"the folder cannot be written: {folder} is on a read-only file system"
    elif exc.errno in NO_PERMISSION:
        message = f"the folder cannot be written: no permission to write {name or folder} ({reason})"
    else:
        message = f"the folder cannot be written: writing {name or f'into {folder}'} failed ({reason})"
    return JobFailure("cannot_write", message)


def report_failure(exc: BaseException, folder, events) -> int:
    """The one `error` event for a run (or rank) that failed with `exc`, emitted on `events`
    (classify; an internal error's traceback goes to stderr); returns the exit code."""
    failure = classify(exc, folder)
    if failure.kind == "internal":
        traceback.print_exception(exc, file=sys.stderr)
    events.emit("error", final=True, kind=failure.kind, message=failure.message, hint=failure.hint)
    return exit_code(failure.kind)


def classify(exc: BaseException, folder=None) -> JobFailure:
    """Turn any exception a job raised into a JobFailure with the right kind and a useful hint: the
    one place exceptions become error kinds. `folder`: the job folder, named by write failures (a
    full disk or a read-only file system is `cannot_write` wherever it happens)."""
    if isinstance(exc, JobFailure):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Cancelled("interrupted")
    cancel = _wrapped_cancel(exc)
    if cancel is not None:
        return cancel
    if _is_job_error(exc):
        return JobFailure("invalid_job", str(exc))
    if isinstance(exc, OSError) and exc.errno in DISK_FULL | READ_ONLY:
        return write_failure(exc, folder or exc.filename or "the output folder")
    if is_out_of_memory(exc):
        return JobFailure("out_of_memory", f"out of memory: {exc}".strip())
    if isinstance(exc, ModuleNotFoundError):
        name = exc.name or str(exc)
        return JobFailure("missing_dependency", f"the Python package {name!r} is not installed in {_exe()}")
    if isinstance(exc, ImportError):
        return JobFailure("missing_dependency", f"a Python package failed to import: {exc}")
    return JobFailure("internal", f"{type(exc).__name__}: {exc}")


def _wrapped_cancel(exc: BaseException) -> JobFailure | None:
    """The cancel behind `exc`, when library code turned one into another error: the signal
    handler raises Cancelled wherever the main thread is, e.g. inside an Enum class being built
    by an import, which re-raises it as a TypeError from it. None when there is none."""
    seen = set()
    cause = _chained(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, Cancelled):
            return cause
        if isinstance(cause, KeyboardInterrupt):
            return Cancelled("interrupted")
        cause = _chained(cause)
    return None


def _chained(exc: BaseException) -> BaseException | None:
    """The exception a traceback shows before `exc`: its cause, else its context unless
    suppressed (`raise ... from None`)."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _exe() -> str:
    import sys

    return sys.executable or "this Python"
