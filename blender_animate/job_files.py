"""Reading a job folder's input files: plain files only, bounded, no pickles (stdlib + numpy).

Input files are plain files inside the job folder: a symbolic link, a FIFO or a device is refused
(`open_input`). Arrays are read by `read_npy` / `read_npz` on numpy's own .npy header reader, which
never unpickles, accept numbers and booleans only, and check every array's header against the
bytes the file really holds before allocating it. `JobError` is the error of every job check
(re-exported by blender_animate.job, where the rest of the contract lives).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

MAX_ARRAY_BYTES = 1 << 30  # per conditions.npz / depth.npy, uncompressed
# Array kinds a job file may hold: booleans, integers, floats (never objects, text or records).
NUMBER_KINDS = "biuf"


class JobError(ValueError):
    """An invalid job or setting; the message says what to change."""


_KIND_WORDS = {"U": "text", "S": "bytes", "O": "Python objects", "V": "records", "c": "complex numbers"}


def _kind_words(arr) -> str:
    """What an array of a refused dtype holds, in words."""
    return _KIND_WORDS.get(getattr(getattr(arr, "dtype", None), "kind", ""), "something else")


def open_input(path: str | os.PathLike):
    """Open a job input file for reading (binary). Refuses a symbolic link (whatever it points at),
    a FIFO, a device or a folder with JobError; FileNotFoundError when it does not exist."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    flags |= getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():  # Windows: no O_NOFOLLOW
        raise JobError(_symlink_message(path))
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if path.is_symlink():  # ELOOP (Linux) or EMLINK (FreeBSD) from O_NOFOLLOW
            raise JobError(_symlink_message(path)) from None
        if isinstance(exc, FileNotFoundError):
            raise
        raise JobError(f"{path} cannot be read ({exc.strerror or exc}): check its permissions") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
            raise JobError(f"{path} is {what}: the job folder must hold the file itself")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_input(path: str | os.PathLike) -> Path:
    """`path` if it is a plain file (see open_input), for readers that take a path (video decoders)."""
    with open_input(path):
        return Path(path)


def _symlink_message(path: Path) -> str:
    return (
        f"{path} is a symbolic link: the job folder must hold its input files themselves "
        "(copy the file in, or export the job again)"
    )


def read_npy(fh, available: int, where: str) -> np.ndarray:
    """One .npy array from the binary stream `fh`, which holds `available` bytes from here. Checks
    the header (format 1.0/2.0, a dtype of numbers or booleans, no pickles) and that the data it
    announces is there and at most MAX_ARRAY_BYTES before allocating anything."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise JobError(f"{where} is a .npy file of version {version}, which this generator does not read")
    except (ValueError, SyntaxError, TypeError, OverflowError, KeyError) as exc:  # a malformed header
        raise JobError(f"{where} has no valid .npy header ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject or dtype.kind not in NUMBER_KINDS:
        raise JobError(
            f"{where} holds {_kind_words(np.empty(0, dtype))} (dtype {dtype}); job arrays hold numbers or "
            "booleans only"
        )
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    header = fh.tell() if hasattr(fh, "tell") else 0
    if nbytes > MAX_ARRAY_BYTES:
        raise JobError(f"{where} announces an array of {nbytes / 2**30:.1f} GiB (shape {shape}): too big")
    if nbytes > available - header:
        raise JobError(
            f"{where} is cut short: its header announces {nbytes} bytes of data (shape {shape}) but "
            f"the file holds {max(0, available - header)}"
        )
    buf = bytearray(nbytes)
    if nbytes and fh.readinto(buf) != nbytes:
        raise JobError(f"{where} is cut short: fewer data bytes than its header announces")
    if fh.read(1):
        raise JobError(f"{where} holds more bytes than its header announces")
    arr = np.frombuffer(buf, dtype=dtype, count=count) if count else np.empty(0, dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_npz(path: str | os.PathLike, names: list[str], optional=()) -> dict[str, np.ndarray]:
    """The arrays `names` of an .npz file (a plain file, see open_input), each read by read_npy;
    those of `optional` that the file lacks are left out. Raises JobError naming the file for
    anything missing, corrupt (bad zip, zlib, CRC) or too big."""
    path = Path(path)
    try:
        with open_input(path) as fh, zipfile.ZipFile(fh) as zf:
            members = {info.filename: info for info in zf.infolist()}
            names = [n for n in names if n not in optional or n + ".npy" in members]
            missing = [n for n in names if n + ".npy" not in members]
            if missing:
                raise JobError(f"{path}: missing arrays {missing}")
            total = sum(members[n + ".npy"].file_size for n in names)
            if total > MAX_ARRAY_BYTES:
                raise JobError(f"{path} holds {total / 2**30:.1f} GiB of arrays: too big for a job")
            out = {}
            for name in names:
                info = members[name + ".npy"]
                with zf.open(info) as member:
                    out[name] = read_npy(member, info.file_size, f"{path}: {name}")
            return out
    except (JobError, FileNotFoundError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and struct raise many kinds on corrupt data
        raise JobError(
            f"{path} is not a readable conditions file ({type(exc).__name__}: {exc}): export the job again"
        ) from None
