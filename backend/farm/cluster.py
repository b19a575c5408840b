"""Connecting to a Ray cluster, or starting a local one that listens on 127.0.0.1 only.

- `connect(None)` (no `--address`): a local cluster for this process, loopback only
  (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes Ray use 127.0.0.1 for every service), with
  `num_cpus`/`num_gpus` if given; it ends with `shutdown()`.
- `connect("auto")`: the cluster `ray start` started on this machine; `connect("HOST:PORT")`: a
  head node's GCS; `connect("ray://HOST:10001")`: Ray Client (e.g. a KubeRay head service).
Usage statistics are off unless the environment says otherwise (`RAY_USAGE_STATS_ENABLED`): the
farm contacts nothing but the cluster.
"""

from __future__ import annotations

import os
import sys

from .jobs import FarmError

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
INSTALL_HINT = "pip install 'ray>=2.40' (an optional part of backend/requirements-generator.txt)"


def host_of(address: str | None) -> str | None:
    """The host part of a Ray address (None for a local cluster or "auto")."""
    if address in (None, "", "local", "auto"):
        return None
    rest = address.split("://", 1)[-1]
    if rest.startswith("["):
        return rest[: rest.index("]") + 1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def is_local(address: str | None) -> bool:
    """True for a local cluster, "auto" (this machine's cluster) and loopback addresses."""
    host = host_of(address)
    return host is None or host in LOOPBACK


def import_ray():
    """Import Ray, or raise FarmError saying how to install it into this Python."""
    try:
        import ray
    except ImportError as exc:
        raise FarmError(f"Ray is not installed in {sys.executable} ({exc}); {INSTALL_HINT}") from exc
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None):
    """Start (address None) or join a cluster; returns the `ray` module, initialised."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if is_local(address) and "ray" not in sys.modules:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when Ray is imported
    ray = import_ray()
    quiet = {"log_to_driver": False, "configure_logging": False}
    try:
        if address in (None, "", "local"):
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except ConnectionError as exc:
        raise FarmError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    if address in (None, "", "local") and host_of(ray.get_runtime_context().gcs_address) not in LOOPBACK:
        ray.shutdown()  # Ray was imported before connect() could keep it on the loopback
        raise FarmError("the local cluster would listen beyond 127.0.0.1: start it before importing ray")
    from . import task

    ray.cloudpickle.register_pickle_by_value(task)  # workers need no checkout to start a task
    return ray


def shutdown() -> None:
    """Leave the cluster (a local one started by `connect(None)` ends with it)."""
    if "ray" in sys.modules:
        sys.modules["ray"].shutdown()
