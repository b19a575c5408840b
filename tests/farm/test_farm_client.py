"""The add-on's farm client (blender_animate/addon/farm_client.py): the real `python -m backend farm
run` as a child process on the test's local Ray cluster, followed without blocking."""

from __future__ import annotations

import time

import pytest

from blender_animate.addon.farm_client import FarmProcess, is_local_address, online_problem
from blender_animate.result import read_result


@pytest.mark.parametrize(
    "address, local",
    [("", True), ("auto", True), ("127.0.0.1:6379", True), ("ray://localhost:10001", True),
     ("[::1]:6379", True), ("10.1.2.3:6379", False), ("ray://farm.studio:10001", False)],
)  # fmt: skip
def test_a_remote_farm_is_refused_while_online_access_is_off(address, local):
    assert is_local_address(address) is local
    assert online_problem(address, online_access=True) is None
    problem = online_problem(address, online_access=False)
    assert (problem is None) is local
    if not local:
        assert address in problem and "Preferences > System > Network" in problem


def follow(farm: FarmProcess, on_event=None, timeout: float = 180.0) -> list:
    outcomes, deadline = [], time.monotonic() + timeout
    while not farm.finished and time.monotonic() < deadline:
        for event in farm.poll():
            outcome = farm.apply(event)
            if outcome is not None:
                outcomes.append(outcome)
            if on_event is not None:
                on_event(event)
        time.sleep(0.05)
    assert farm.finished, "the farm did not finish"
    return outcomes


@pytest.mark.slow
def test_the_client_follows_every_job_and_ends_with_the_summary(ray_cluster, preview_job, tmp_path):
    jobs = [preview_job("a"), preview_job("b")]
    address = ray_cluster.get_runtime_context().gcs_address
    farm = FarmProcess(tmp_path, jobs, address=address).start()
    assert farm.command()[1:5] == ["-m", "backend", "farm", "run"] and farm.command()[-2:] == [
        "--address",
        address,
    ]
    outcomes = follow(farm)
    assert sorted(outcomes) == sorted((j.resolve(), "done") for j in jobs)  # each result, as it finishes
    assert farm.result["event"] == "summary" and farm.summary["counts"]["done"] == 2
    assert farm.proc.wait(timeout=60) == 0 and (tmp_path / "farm.log").is_file()  # it leaves Ray after
    for job in jobs:
        assert read_result(job).num_frames == 5


@pytest.mark.slow
def test_cancel_stops_every_job_and_imports_nothing(ray_cluster, preview_job, tmp_path):
    jobs = [preview_job("a", size="large"), preview_job("b", size="large")]
    farm = FarmProcess(tmp_path, jobs, address=ray_cluster.get_runtime_context().gcs_address).start()
    outcomes = follow(farm, lambda e: e.get("event") == "started" and farm.cancel())
    assert [o for o in outcomes if o[1] == "done"] == []
    assert {s.state for s in farm.jobs.values()} == {"cancelled"}
    assert farm.summary["counts"]["cancelled"] == 2 and farm.proc.wait(timeout=60) == 3
    assert not any((j / "out").exists() for j in jobs)
