"""The farm's bookkeeping without Ray: job folders, resources per mode, retries, exit codes, the table."""

from __future__ import annotations

import pytest

from backend.farm import cluster
from backend.farm.jobs import FarmError, FarmJob, exit_code, format_table, load_jobs, resources, should_retry
from tests.backend.jobs import write_job


def test_load_jobs_reads_the_mode_and_refuses_what_is_not_a_job(tmp_path):
    a = write_job(tmp_path / "a")
    b = write_job(tmp_path / "b", mode="guided")
    jobs = load_jobs([a, b])
    assert [(j.job_dir, j.mode) for j in jobs] == [(a, "preview"), (b, "guided")]
    assert len(jobs[0].fingerprint) == 64 and jobs[0].fingerprint != jobs[1].fingerprint
    with pytest.raises(FarmError, match="given twice"):
        load_jobs([a, tmp_path / "a"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FarmError, match="empty is not a job folder"):
        load_jobs([a, tmp_path / "empty"])
    with pytest.raises(FarmError, match="no job folders"):
        load_jobs([])


def test_resources_per_mode():
    assert resources("preview") == {"num_cpus": 1.0, "num_gpus": 0}
    assert resources("guided") == {"num_cpus": 1.0, "num_gpus": 1.0}
    assert resources("animateanything", gpus=0.5, cpus=4) == {"num_cpus": 4, "num_gpus": 0.5}


def test_retry_only_after_a_death_within_the_allowed_attempts(tmp_path):
    job = FarmJob(tmp_path, "preview", "0" * 64, attempts=1)
    assert should_retry(job, "worker_died", retries=2) and should_retry(job, "crashed", retries=1)
    assert not should_retry(job, "internal", retries=2)  # an error event: the same inputs fail again
    job.attempts = 3
    assert not should_retry(job, "worker_died", retries=2)
    job.attempts, job.cancel_requested = 1, True
    assert not should_retry(job, "worker_died", retries=2)


def test_exit_code_and_table(tmp_path):
    jobs = [FarmJob(tmp_path / n, "preview", "0" * 64) for n in ("a", "b")]
    assert exit_code(jobs) == 1  # not finished
    jobs[0].end("done")
    jobs[1].end("cancelled", "cancelled", "cancelled (cancel file)")
    assert exit_code(jobs) == 3
    jobs[1].end("done")
    assert exit_code(jobs) == 0
    jobs[1].end("failed", "internal", "boom")
    assert exit_code(jobs) == 1
    table = format_table(jobs).splitlines()
    assert table[0].split() == ["job", "mode", "state", "tries", "node", "seconds", "message"]
    assert table[2].split()[:3] == ["b", "preview", "failed"] and table[2].endswith("boom")
    assert table[-1] == "1 done, 1 failed, 0 cancelled of 2 jobs"


@pytest.mark.parametrize(
    "address, host, local",
    [
        (None, None, True),
        ("auto", None, True),
        ("127.0.0.1:6379", "127.0.0.1", True),
        ("localhost:6379", "localhost", True),
        ("ray://[::1]:10001", "[::1]", True),
        ("10.0.0.5:6379", "10.0.0.5", False),
        ("ray://head.studio.lan:10001", "head.studio.lan", False),
    ],
)
def test_addresses(address, host, local):
    assert cluster.host_of(address) == host
    assert cluster.is_local(address) is local
