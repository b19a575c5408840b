"""The error kinds of issue 10 (busy, cannot_write): hints, exit codes, classification in one place,
and a client that shows them as failures with their message and hint."""

from __future__ import annotations

import errno
import os

import pytest

from backend.errors import DEFAULT_HINTS, KINDS, JobFailure, classify, exit_code, write_failure
from backend.job_folder import writing
from blender_animate.addon.run_state import RunState


def test_every_kind_has_a_hint_and_an_exit_code():
    assert {"busy", "cannot_write"} <= set(KINDS)
    assert set(DEFAULT_HINTS) == set(KINDS)
    assert exit_code("busy") == 2 and exit_code("cannot_write") == 1


@pytest.mark.parametrize(
    "err, start",
    [
        (errno.ENOSPC, "the disk is full: /job/out.mp4 could not be written (No space left on device)"),
        (errno.EROFS, "the folder cannot be written: /job is on a read-only file system"),
        (errno.EACCES, "the folder cannot be written: no permission to write /job/out.mp4"),
        (errno.EIO, "the folder cannot be written: writing /job/out.mp4 failed"),
    ],
)
def test_write_failures_are_said_in_words(err, start):
    failure = write_failure(OSError(err, os.strerror(err), "/job/out.mp4"), "/job")
    assert failure.kind == "cannot_write" and failure.message.startswith(start), failure.message
    assert "Free some disk space" in failure.hint


def test_a_full_disk_or_read_only_system_is_cannot_write_anywhere():
    assert classify(OSError(errno.ENOSPC, "No space left on device"), "/job").kind == "cannot_write"
    assert classify(OSError(errno.EROFS, "Read-only file system"), "/job").kind == "cannot_write"
    # Permission errors outside the writing steps may be anything (a model folder): not guessed.
    assert classify(PermissionError(errno.EACCES, "Permission denied")).kind == "internal"
    with pytest.raises(JobFailure) as info, writing("/job"):
        raise PermissionError(errno.EACCES, "Permission denied", "/job/.out-partial-1")
    assert info.value.kind == "cannot_write"


@pytest.mark.parametrize("kind", ["busy", "cannot_write"])
def test_the_client_shows_new_kinds_as_failures(tmp_path, kind):
    run = RunState(tmp_path)
    assert (
        run.apply({"event": "error", "kind": kind, "message": "the message", "hint": "the hint"}) == "ended"
    )
    assert run.state == "failed" and run.message == "the message" and run.hint == "the hint"
    assert "the message. the hint" in run.full_message()
