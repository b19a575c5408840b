"""The training entry point at tiny sizes: the real CLI as a subprocess on a synthetic dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from tests.animateanything.conftest import build_tiny_pipeline, save_base  # noqa: E402

from .conftest import write_tiny_dataset  # noqa: E402

pytestmark = [pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--num-frames", "9", "--height", "32", "--width", "32", "--save-every", "100", "--seed", "0"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "backend.training.train", *args, *TINY],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny CogVideoX base folder, a full AnimateAnything checkpoint referencing it (stage 1
    included), and a dataset of 2 clips x 9 frames at 32x32."""
    root = tmp_path_factory.mktemp("train")
    pipe = build_tiny_pipeline(seed=0)
    base = save_base(pipe, root / "base")
    pipe.set_base_model(str(base))
    pipe.save_pretrained(root / "init")
    data = write_tiny_dataset(root / "data")
    return root, base, root / "init", data, pipe


def test_dataset_reads_the_format(setup):
    from backend.training.data import ClipDataset

    _, _, _, data, _ = setup
    torch.manual_seed(0)
    item = ClipDataset(data, 5, 16, 24, max_stride=2, num_tracks=4)[0]
    assert item["frames"].shape == (5, 3, 16, 24) and item["plucker"].shape == (5, 6, 16, 24)
    assert torch.all(item["flow"][0] == 0)
    # 1 px per frame at 32 px wide, cropped to 32x21 and resized to 24x16: 0.75 px per frame, x only.
    stride = round(float(item["flow"][1, 0, 0, 0]) / 0.75)
    assert stride in (1, 2)
    assert torch.allclose(item["flow"][4, ..., 0], torch.tensor(3.0 * stride))
    assert torch.allclose(item["K"][0, 0, 0], torch.tensor(24.0))  # fx 32 px * 24 / 32
    if item["sparse_mask"].sum() > 0:  # sampled tracks follow the GT flow
        on = item["sparse_mask"][4] > 0
        assert torch.allclose(item["sparse_flow"][4][on][:, 0], torch.tensor(3.0 * stride))


def test_missing_pose_file_names_the_clip(setup, tmp_path):
    import shutil

    from backend.training.data import ClipDataset, DatasetError

    _, _, _, data, _ = setup
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    (broken / "clip_001" / "cameras.txt").unlink()
    with pytest.raises(DatasetError, match=r"clip_001.*cameras\.txt"):
        ClipDataset(broken, 9, 32, 32)
    proc = run_cli("--stage", "2", "--data", str(broken), "--base", str(setup[1]), "--output",
                   str(tmp_path / "out"), "--steps", "1", "--sizes", "tiny", check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "clip_001" in proc.stderr and "cameras.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stage2_trains_saves_loads_and_resumes(setup, tmp_path):
    from backend.animateanything.checkpoint import plan_checkpoint
    from backend.animateanything.pipeline import AnimateAnythingPipeline

    _, base, _, data, pipe = setup
    out = tmp_path / "stage2"
    args = ["--stage", "2", "--data", str(data), "--base", str(base), "--output", str(out), "--sizes", "tiny",
            "--lr", "1e-2", "--flow-noise", "0.1"]  # fmt: skip
    run_cli(*args, "--steps", "2")
    log = log_lines(out)
    assert [r["step"] for r in log] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in log)

    assert not plan_checkpoint(out).missing
    index = json.loads((out / "animateanything_index.json").read_text())
    assert index["base_model"] == str(base)
    assert {n: c["source"] for n, c in index["components"].items() if c["source"] == "base"} == {
        "transformer": "base",
        "vae": "base",
        "scheduler": "base",
        "text_encoder": "base",
        "tokenizer": "base",
    }  # fmt: skip  (fingerprints unchanged: the frozen base was not touched)
    loaded = AnimateAnythingPipeline.from_pretrained(out)
    assert same(state(loaded.transformer), state(pipe.transformer))
    assert same(state(loaded.vae), state(pipe.vae))
    # The trained parts moved from their identity start (zero output projection, W = 1).
    assert loaded.flow_fusion.attn.to_out[0].weight.abs().sum() > 0
    assert not torch.all(loaded.frequency_stabilizer.weight == 1)
    frames = loaded(
        torch.zeros(32, 32, 3, dtype=torch.uint8).numpy(), "a moving pattern 0", height=32, width=32,
        num_frames=9, flow=torch.zeros(9, 32, 32, 2), num_inference_steps=2, guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0), max_sequence_length=16,
    ).frames  # fmt: skip
    assert frames.shape == (9, 32, 32, 3)

    before = state(loaded.flow_encoder)
    run_cli(*args, "--steps", "3", "--resume")
    assert [r["step"] for r in log_lines(out)] == [1, 2, 3]
    assert json.loads((out / "training_state.json").read_text())["step"] == 3
    assert not same(state(AnimateAnythingPipeline.from_pretrained(out).flow_encoder), before)


def test_stage1_trains_only_fgm_and_crm(setup, tmp_path):
    from backend.animateanything.pipeline import AnimateAnythingPipeline

    _, _, init, data, _ = setup
    out = tmp_path / "stage1"
    run_cli("--stage", "1", "--data", str(data), "--init", str(init), "--output", str(out), "--steps", "1",
            "--lr", "1e-3", "--num-tracks", "4")  # fmt: skip
    assert torch.isfinite(torch.tensor(log_lines(out)[0]["loss"]))
    start = AnimateAnythingPipeline.from_pretrained(init, load_text_encoder=False)
    trained = AnimateAnythingPipeline.from_pretrained(out, load_text_encoder=False)
    for name in (
        "flow_vae",
        "image_vae",
        "flow_encoder",
        "flow_fusion",
        "frequency_stabilizer",
        "transformer",
    ):
        assert same(state(getattr(trained, name)), state(getattr(start, name))), name
    for name in ("flow_generator", "camera_reference"):
        assert not same(state(getattr(trained, name)), state(getattr(start, name))), name
    flow = trained(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy(), height=32, width=32, num_frames=9,
                   flow_steps=2, output_type="flow").flow  # fmt: skip
    assert flow.shape == (9, 32, 32, 2)


def test_video_clip_and_flow_at_another_size(setup, tmp_path):
    cv2 = pytest.importorskip("cv2")
    import shutil

    import numpy as np

    from backend.training.data import ClipDataset
    from blender_animate.flowviz import load_flow, resize_flow, save_flow

    _, _, _, data, _ = setup
    clip = tmp_path / "data" / "clip_000"
    shutil.copytree(data / "clip_000", clip)
    writer = cv2.VideoWriter(str(clip / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 8, (32, 32))
    if not writer.isOpened():
        pytest.skip("no mp4 encoder in this OpenCV")
    for png in sorted((clip / "frames").iterdir()):
        writer.write(cv2.imread(str(png)))
    writer.release()
    shutil.rmtree(clip / "frames")
    save_flow(clip / "flow.npz", resize_flow(load_flow(clip / "flow.npz"), 16, 16))  # half size
    item = ClipDataset(tmp_path / "data", 9, 32, 32, num_tracks=0, plucker=False)[0]
    assert item["frames"].shape == (9, 3, 32, 32) and "plucker" not in item
    assert np.allclose(item["flow"][8, ..., 0].numpy(), 8.0, atol=1e-2)  # back in 32-px units
    assert item["sparse_mask"].sum() == 0
