"""Optional compiled kernels (numba): each is a module that imports numba at its top, loaded once
and run on a tiny problem first, so that a broken numba install falls back to the numpy code it
accelerates (with a warning on stderr) instead of failing a job. Without numba: None, silently.

Loading takes ~0.3 s the first time in a process (numba's import and start) and a few
milliseconds per kernel after that (numba's on-disk cache; the first run after an install
compiles, a few seconds: `python -m backend doctor` does it). numba's start imports scipy.linalg
(~0.09 s) only to find BLAS for np.dot and np.linalg, which no kernel here uses: it is not
imported for that (a kernel that used them would not build, and numpy would run it).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable

_LOCK = threading.Lock()  # the frame threads ask together; numba compiles one at a time anyway
_LOADED: dict[str, object] = {}


def load(module: str, smoke_test: Callable[[object], object]):
    """The kernel module `module` (an absolute name) once `smoke_test(module)` has run without
    an error (compiling it, or loading it from numba's cache), or None: numba is not installed,
    or the kernel does not import or build (warned). Cached per module; thread-safe."""
    with _LOCK:
        if module not in _LOADED:
            _LOADED[module] = _load(module, smoke_test)
        return _LOADED[module]


@contextlib.contextmanager
def _without_blas():
    """numba.np.arraymath's BLAS probe fails fast instead of importing scipy.linalg (a None in
    sys.modules stops that import before its parent package loads). Left alone when
    scipy.linalg is imported already."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules or "numba.np.arraymath" in sys.modules:
        yield
        return
    sys.modules[name] = None
    try:
        yield
    finally:
        if sys.modules.get(name, 0) is None:
            del sys.modules[name]


def _load(module: str, smoke_test):
    with _without_blas():
        return _build(module, smoke_test)


def _build(module: str, smoke_test):
    try:
        kernel = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == "numba":
            return None
        raise
    except Exception as exc:  # noqa: BLE001 - a broken numba install: numpy does the same job
        _warn(module, exc)
        return None
    try:
        smoke_test(kernel)
    except Exception as exc:  # noqa: BLE001 - as above
        _warn(module, exc)
        return None
    return kernel


def _warn(module: str, exc: BaseException) -> None:
    print(f"warning: the compiled kernel {module} failed to build ({exc!r}); using numpy", file=sys.stderr)
