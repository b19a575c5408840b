"""A real local Ray cluster for the farm tests: started in the test process on 127.0.0.1 only
(`backend.farm.cluster.connect(None)`), two CPUs, shared by the farm tests, stopped at the end of
the session."""

from __future__ import annotations

import pytest

from tests.backend.jobs import write_job


@pytest.fixture(scope="session")
def ray_cluster():
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not importorskip: connect() imports Ray itself
        pytest.skip("Ray is not installed (requirements.txt installs it)")
    from backend.farm import cluster

    ray = cluster.connect(None, num_cpus=2, num_gpus=0)
    try:
        yield ray
    finally:
        cluster.shutdown()


@pytest.fixture
def preview_job(tmp_path):
    """preview_job(name, size="small"|"large") -> a valid preview job folder (large: ~1-2 s with
    numba's kernels, for the tests that act while it runs)."""

    def factory(name: str, size: str = "small"):
        if size == "large":
            return write_job(tmp_path / name, width=640, height=480, num_frames=33)
        return write_job(tmp_path / name, width=64, height=48, num_frames=5)

    return factory
