"""The out/ contract (blender_animate.result): one writer, one reader that checks every file, on the
output of a real generator run."""

from __future__ import annotations

import json
import shutil

import pytest

from blender_animate import result as contract
from tests.jobfiles import generate_job


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANIMATE_ANYTHING_PNG", "1")  # PNG frames beside the mp4 too (opt-in): both are checked
        return generate_job(tmp_path_factory.mktemp("result") / "shot")


@pytest.fixture
def job(finished_job, tmp_path):
    return shutil.copytree(finished_job, tmp_path / "shot")


def test_a_real_run_reads_back_as_written(job):
    files = contract.read_result(job)
    data = json.loads((job / "out" / "result.json").read_text())
    assert data["schema_version"] == contract.SCHEMA_VERSION and files.result == data
    assert (files.num_frames, files.width, files.height, files.fps) == (9, 64, 48, 8.0)
    if files.kind == "movie":
        assert files.video == job.resolve() / "out" / contract.VIDEO and files.first_file == files.video
    else:  # a generator without PyAV
        assert [p.name for p in files.frames] == [contract.frame_name(i) for i in range(9)]
    assert data["outputs"]["frames"] == contract.out_path(contract.FRAMES_DIR)


def test_outputs_added_later_go_through_the_same_writer(job):
    files = contract.read_result(job)
    contract.record_outputs(files, {"extra": "out/frames"}, encoded_by="a test")
    again = contract.read_result(job)
    assert again.result["outputs"]["extra"] == "out/frames" and again.result["encoded_by"] == "a test"
    assert not list((job / "out").glob(".*.part")), "written atomically: no temporary file is left"


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda job: shutil.rmtree(job / "out"), "has not run yet"),
        (lambda job: (job / "out" / "result.json").unlink(), "did not finish"),
        (lambda job: (job / "out" / "result.json").write_text("{"), "not readable JSON"),
        (lambda job: _set_outputs(job, {"video": "../../elsewhere.mp4"}), "outside the job folder"),
        (lambda job: _set_outputs(job, {"video": None, "frames": "out/frames"}, frames=3), "lacks"),
        (lambda job: _truncate(job / "out" / "video.mp4"), "incomplete"),
    ],
)
def test_broken_outputs_are_refused_with_what_to_do(job, damage, words):
    if words == "incomplete" and not (job / "out" / "video.mp4").is_file():
        pytest.skip("this generator wrote PNG frames only (no PyAV)")
    damage(job)
    with pytest.raises(contract.ResultError, match=words):
        contract.read_result(job)


def _set_outputs(job, outputs: dict, frames: int | None = None) -> None:
    path = job / "out" / "result.json"
    data = json.loads(path.read_text())
    data["outputs"].update(outputs)
    if frames is not None:
        for p in sorted((job / "out" / "frames").glob("*.png"))[frames:]:
            p.unlink()
    path.write_text(json.dumps(data))


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
