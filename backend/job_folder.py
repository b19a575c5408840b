"""The job folder during a run: its lock (one run per folder), what dead runs left, and the swap
that puts a finished run's out/ in place only when it is complete (the runner's steps 2 and 6)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from blender_animate import result as contract
from blender_animate.result import PARTIAL_PREFIX

from .errors import JobFailure, write_failure

OLD_PREFIX = ".out-old-"  # + pid: the previous out/ during the swap


class FolderLock:
    """The job folder's run lock: `path` (JOB/.run-lock) locked exclusively and without waiting,
    flock on POSIX (the system releases it when the process ends, however it ends), msvcrt on
    Windows. The holder writes its pid into the file (for the busy message) and removes the file
    when it is done; a file left by a killed run is simply locked again."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise JobFailure: busy (another run holds it; nothing was changed),
        cannot_write (the folder cannot be written), invalid_job (the lock is a symbolic link)."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(20):
            try:
                fd = os.open(self.path, flags, 0o666)
            except OSError as exc:
                if os.path.islink(self.path):
                    raise JobFailure(
                        "invalid_job", f"{self.path} is a symbolic link: remove it and run again"
                    ) from None
                raise write_failure(exc, self.path.parent) from None
            if not _try_lock(fd):
                holder = _read_pid(fd)
                os.close(fd)
                raise JobFailure(
                    "busy",
                    f"another run{f' (process {holder})' if holder else ''} holds the job folder "
                    f"{self.path.parent}; this run changed nothing",
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                self._fd = fd
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.write(fd, f"{os.getpid()}\n".encode())
                return
            os.close(fd)  # the holder removed the file while we opened it: lock the new one
        raise JobFailure("busy", f"the lock {self.path} keeps changing: another run is starting there")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.name == "posix":  # remove, then unlock: a run that opened the old file sees it go
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(fd)
        else:  # Windows cannot remove an open file
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _try_lock(fd: int) -> bool:
    """True when this process now holds the lock on `fd` (or the file system has no locks)."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except ImportError:
        return True
    except OSError as exc:
        # A file system without locks (some network mounts): run unlocked rather than not at all.
        return exc.errno in _NO_LOCKS


_NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, getattr(errno, "EOPNOTSUPP", errno.ENOSYS)}


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0) if hasattr(os, "pread") else b""
        pid = text.decode("ascii", "replace").strip()
        if pid.isdigit():
            return pid
    return ""


@contextlib.contextmanager
def writing(job_dir: Path):
    """Inside, an OSError is a write failure of the job folder: kind cannot_write, in words (the disk
    is full, the folder is read-only or not writable), naming the folder."""
    try:
        yield
    except OSError as exc:
        raise write_failure(exc, job_dir) from exc


def remove_leftovers(job_dir: Path) -> None:
    """Remove what runs that are gone left (`.out-partial-*`, `.out-old-*`): the lock is held, so
    no other run is alive in this folder. A previous out/ that a run killed in mid-swap left as
    `.out-old-*` (and no out/) is put back first."""
    out = job_dir / contract.OUT_DIR
    if not os.path.lexists(out):
        olds = [p for p in job_dir.glob(OLD_PREFIX + "*") if p.is_dir() and not p.is_symlink()]
        complete = [p for p in olds if (p / contract.RESULT_JSON).is_file()]
        if complete:
            os.replace(max(complete, key=lambda p: p.stat().st_mtime), out)
    for prefix in (PARTIAL_PREFIX, OLD_PREFIX):
        for p in job_dir.glob(prefix + "*"):
            remove(p)


def swap_in(partial: Path, job_dir: Path) -> None:
    """Make `partial` the job's out/: the previous out/ (a folder, or a stray file or link) moves to
    `.out-old-<pid>`, `partial` to out/, then the old one is removed (a link itself, never what it
    points to). If the second rename fails the previous out/ is put back."""
    out = job_dir / contract.OUT_DIR
    old = job_dir / f"{OLD_PREFIX}{os.getpid()}"
    had_old = os.path.lexists(out)
    if had_old:
        remove(old)
        os.replace(out, old)
    try:
        os.replace(partial, out)
    except BaseException:
        if had_old:
            with contextlib.suppress(OSError):
                os.replace(old, out)
        raise
    if had_old:
        remove(old)


def remove(path: Path) -> None:
    """Remove a folder tree, a file or a link (the link, not its target); quiet when it is gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass
