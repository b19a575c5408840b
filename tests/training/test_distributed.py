"""Training on several processes and the stage-2 latent cache, at tiny sizes.

- A real `accelerate launch` of two CPU processes (torchrun underneath, gloo on 127.0.0.1) trains
  stage 2 (DDP) for two steps: each rank sees another clip and other noise, and still every rank
  holds the same weights bit for bit (checked by the trainer, recorded in training_state.json, and
  equal to the checkpoint the main process alone wrote); then it resumes on two processes.
- Stage 1 trains one step on two processes (DDP of the FGM + CRM pair).
- A cached stage-2 run trains exactly the weights an uncached run trains; the cache is reused on
  the next run and an entry is recomputed when its clip changes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from tests.animateanything.conftest import build_tiny_pipeline, save_base  # noqa: E402

from .conftest import write_tiny_dataset  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--num-frames", "9", "--height", "32", "--width", "32", "--save-every", "100", "--seed", "0",
        "--sizes", "tiny", "--lr", "1e-2"]  # fmt: skip


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """`accelerate launch` of the trainer on `processes` CPU processes (gloo, 127.0.0.1 only)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", str(processes), "--num_machines", "1",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()),
           "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "backend.training.train", *args, *TINY]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env={**env(), "ACCELERATE_USE_CPU": "true"}, capture_output=True,
                          text=True, timeout=420)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "backend.training.train", *args, *TINY], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def saved_state(out: Path) -> dict:
    return json.loads((out / "training_state.json").read_text())


def logged(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def cache_counts(proc) -> dict:
    return next(json.loads(x)["latent_cache"] for x in proc.stdout.splitlines() if '"latent_cache"' in x)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    pipe = build_tiny_pipeline(seed=0)
    base = save_base(pipe, root / "base")
    pipe.set_base_model(str(base))
    pipe.save_pretrained(root / "init")
    return root, base, root / "init", write_tiny_dataset(root / "data")


def test_two_processes_train_stage2_identically_and_resume(setup, tmp_path):
    from backend.animateanything.pipeline import AnimateAnythingPipeline
    from backend.training.train import weights_digest

    _, base, _, data = setup
    out = tmp_path / "stage2"
    args = ["--stage", "2", "--data", str(data), "--base", str(base), "--output", str(out)]
    launch(*args, "--steps", "2")
    state = saved_state(out)
    assert state["processes"] == 2 and state["backend"] == "gloo"
    digests = state["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert [r["step"] for r in logged(out)] == [1, 2]  # the main process alone logs and writes
    trained = AnimateAnythingPipeline.from_pretrained(out).stage2
    assert weights_digest(list(trained.trainable_parameters())) == digests[0]

    launch(*args, "--steps", "3", "--resume")
    state = saved_state(out)
    assert state["step"] == 3 and state["rank_digests"][0] == state["rank_digests"][1] != digests[0]
    assert [r["step"] for r in logged(out)] == [1, 2, 3]


def test_two_processes_train_stage1(setup, tmp_path):
    _, base, init, data = setup
    out = tmp_path / "stage1"
    launch("--stage", "1", "--data", str(data), "--init", str(init), "--output", str(out), "--steps", "1")
    state = saved_state(out)
    assert state["processes"] == 2 and state["rank_digests"][0] == state["rank_digests"][1]


def test_the_latent_cache_trains_the_same_weights_and_follows_the_clips(setup, tmp_path):
    import numpy as np

    from blender_animate.flowviz import save_flow

    root, base, _, data = setup
    data = Path(__import__("shutil").copytree(data, tmp_path / "data"))
    common = ["--stage", "2", "--data", str(data), "--base", str(base), "--steps", "2", "--max-stride", "2"]
    train(*common, "--output", str(tmp_path / "plain"))
    first = train(*common, "--output", str(tmp_path / "cached"), "--latent-cache")
    # 9-frame clips, 9-frame samples: stride 1 only, one entry per clip.
    assert cache_counts(first) == {"computed": 2, "reused": 0, "dir": str(data / ".latent_cache")}
    entries = sorted(p.relative_to(data).as_posix() for p in (data / ".latent_cache").rglob("*.safetensors"))
    assert entries == [f".latent_cache/clip_00{i}/stride1-9x32x32.safetensors" for i in (0, 1)]
    plain, cached = saved_state(tmp_path / "plain"), saved_state(tmp_path / "cached")
    assert cached["rank_digests"] == plain["rank_digests"]  # bit for bit the same training
    assert [r["loss"] for r in logged(tmp_path / "cached")] == [r["loss"] for r in logged(tmp_path / "plain")]

    again = train(*common, "--output", str(tmp_path / "again"), "--latent-cache")
    assert cache_counts(again)["computed"] == 0 and cache_counts(again)["reused"] == 2
    flow = np.zeros((9, 32, 32, 2), np.float32)
    flow[..., 0] = 2.0 * np.arange(9)[:, None, None]
    save_flow(data / "clip_001" / "flow.npz", flow)  # the clip changed: its entry is stale
    changed = train(*common, "--output", str(tmp_path / "changed"), "--latent-cache")
    assert cache_counts(changed)["computed"] == 1 and cache_counts(changed)["reused"] == 1
    assert saved_state(tmp_path / "changed")["rank_digests"] != cached["rank_digests"]
