"""Fuzzing job.json and conditions.npz (issue 10): a few hundred seeded mutations, every one ends
with exit 0 (done) or exit 2 with one `error` event of kind invalid_job found before `started`;
never an internal error, a traceback or a hang, and the previous complete out/ is never lost.

Byte mutations (flip, insert, delete, truncate, repeat) of both files, plus typed mutations: a
job.json field set to a value of another JSON type or a boundary value, a conditions.npz array
replaced by one of another dtype, shape or content (NaN, 1e30, strings, objects, Fortran order,
big-endian, empty). Most run in-process through `backend.runner.run` (milliseconds each); a
handful go through real `python -m backend run` subprocesses."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest

from backend.events import Events
from backend.runner import run
from tests.backend.jobs import parse_events, run_backend, write_job

SEED = 10
JSON_BYTE_MUTANTS = 140
NPZ_BYTE_MUTANTS = 120
TYPED_MUTANTS = 90
SUBPROCESS_MUTANTS = 6


def _byte_mutant(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.choice(["flip", "flip", "set", "insert", "delete", "truncate", "repeat", "zero run"])
    i = rng.randrange(len(b))
    if op == "flip":
        b[i] ^= 1 << rng.randrange(8)
    elif op == "set":
        b[i] = rng.choice([0, 0x22, 0x2D, 0x30, 0x39, 0x5B, 0x7B, 0xFF, rng.randrange(256)])
    elif op == "insert":
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == "delete":
        del b[i : i + rng.randint(1, 16)]
    elif op == "truncate":
        del b[i:]
    elif op == "repeat":
        j = min(len(b), i + rng.randint(1, 64))
        b[i:i] = b[i:j] * rng.randint(1, 4)
    else:
        b[i : i + rng.randint(1, 32)] = b"\0" * rng.randint(1, 32)
    return bytes(b)


JSON_VALUES = [
    None, True, False, 0, -1, 1, 7, 8.5, 2**63, -(2**63), 1e308, -1e-300, "", "x", "1", "nan",
    [], [1], {}, {"a": 1}, "../escape.mp4", ".hidden", "preview", "guided", "auto", 4096, 1024, 3,
]  # fmt: skip


def _json_mutant(spec: dict, rng: random.Random) -> bytes:
    data = dict(spec)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(data))
        action = rng.random()
        if action < 0.1:
            data.pop(name)
        elif action < 0.15:
            data[f"extra_{rng.randrange(9)}"] = 1
        else:
            data[name] = rng.choice(JSON_VALUES)
    text = json.dumps(data)
    if rng.random() < 0.1:  # Python's json writes NaN/Infinity literals; a hand-edited file may hold them
        text = text.replace("8.0", rng.choice(["NaN", "Infinity", "-Infinity"]), 1)
    return text.encode()


def _array_variants(arr: np.ndarray, rng: random.Random) -> np.ndarray:
    kind = rng.choice(
        ["str", "object", "nan", "huge", "negative", "int", "bool", "float16", "complex", "empty",
         "scalar", "extra axis", "transpose", "fortran", "big-endian", "shorter", "zeros", "records"]
    )  # fmt: skip
    if kind == "str":
        return arr.astype(str)
    if kind == "object":
        return np.array([None, {"a": 1}], dtype=object)
    if kind == "nan":
        out = arr.astype(np.float64)
        if out.size:
            out.flat[rng.randrange(out.size)] = np.nan
        return out
    if kind == "huge":
        return np.full(arr.shape, 1e30)
    if kind == "negative":
        return -np.abs(arr.astype(np.float64)) - 1
    if kind == "int":
        return arr.astype(np.int64)
    if kind == "bool":
        return arr.astype(bool)
    if kind == "float16":
        return arr.astype(np.float16)
    if kind == "complex":
        return arr.astype(np.complex128)
    if kind == "empty":
        return np.zeros((0,) + arr.shape[1:], arr.dtype)
    if kind == "scalar":
        return np.array(1.0)
    if kind == "extra axis":
        return arr[None]
    if kind == "transpose":
        return arr.T
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "big-endian":
        return arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.kind in "if" else arr
    if kind == "shorter":
        return arr[:-1]
    if kind == "zeros":
        return np.zeros_like(arr)
    return np.zeros(arr.shape[:1], dtype=[("x", "f4"), ("y", "f4")])


def _npz_mutant(arrays: dict, rng: random.Random) -> bytes:
    arrays = dict(arrays)
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(sorted(arrays))
        if rng.random() < 0.1:
            arrays.pop(name)
        else:
            arrays[name] = _array_variants(arrays[name], rng)
    buf = io.BytesIO()
    (np.savez_compressed if rng.random() < 0.5 else np.savez)(buf, **arrays)  # savez pickles objects
    return buf.getvalue()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny valid job (16 x 16, 3 frames, one drag, a region): (job folder, its files' bytes)."""
    tracks = np.array([[[4.0, 8.0], [6.0, 8.0], [8.0, 8.0]]], np.float32)
    job = write_job(
        tmp_path_factory.mktemp("fuzz") / "job", width=16, height=16, num_frames=3, tracks=tracks, radius=3
    )
    files = {name: (job / name).read_bytes() for name in ("job.json", "conditions.npz")}
    return job, files


def _generate_mutants(files):
    rng = random.Random(SEED)
    spec = json.loads(files["job.json"])
    with np.load(io.BytesIO(files["conditions.npz"])) as z:
        arrays = {k: z[k] for k in z.files}
    out = []
    for i in range(JSON_BYTE_MUTANTS):
        out.append((f"job.json bytes #{i}", "job.json", _byte_mutant(files["job.json"], rng)))
    for i in range(NPZ_BYTE_MUTANTS):
        out.append(
            (f"conditions.npz bytes #{i}", "conditions.npz", _byte_mutant(files["conditions.npz"], rng))
        )
    for i in range(TYPED_MUTANTS):
        if i % 2:
            out.append((f"job.json typed #{i}", "job.json", _json_mutant(spec, rng)))
        else:
            out.append((f"conditions.npz typed #{i}", "conditions.npz", _npz_mutant(arrays, rng)))
    return out


def _check_outcome(label, code, events, job, out_before):
    assert code in (0, 2), (label, code, events)
    terminal = [e for e in events if e["event"] in ("done", "error")]
    assert len(terminal) == 1 and events[-1] is terminal[0], (label, events)
    if code == 0:
        assert events[-1]["event"] == "done", (label, events)
        assert (job / "out" / "result.json").is_file()
    else:
        assert [e["event"] for e in events] == ["error"], (label, events)  # refused before `started`
        assert events[0]["kind"] == "invalid_job" and events[0]["message"] and events[0]["hint"], label
        assert (job / "out" / "result.json").read_bytes() == out_before, label  # out/ kept
    assert not list(job.glob(".out-*")), label


def test_fuzz_in_process(pristine, capfd):
    job, files = pristine
    buf = io.BytesIO()
    assert run(job, events=Events(buf)) == 0  # a complete out/ to keep
    outcomes = {0: 0, 2: 0}
    for label, name, data in _generate_mutants(files):
        for fname, content in files.items():
            (job / fname).write_bytes(data if fname == name else content)
        out_before = (job / "out" / "result.json").read_bytes()
        buf = io.BytesIO()
        code = run(job, events=Events(buf))
        events = [json.loads(line) for line in buf.getvalue().decode().splitlines()]
        _check_outcome(label, code, events, job, out_before)
        outcomes[code] += 1
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    # The mutants reach both ends: some still run, most are refused (each with its own message).
    assert outcomes[0] >= 10 and outcomes[2] >= 150, outcomes


def test_fuzz_through_real_processes(pristine, tmp_path):
    job, files = pristine
    mutants = _generate_mutants(files)
    picked = random.Random(SEED + 1).sample(mutants, SUBPROCESS_MUTANTS)
    for k, (label, name, data) in enumerate(picked):
        folder = write_job(tmp_path / f"job{k}", width=16, height=16, num_frames=3)
        for fname, content in files.items():
            (folder / fname).write_bytes(data if fname == name else content)
        r = run_backend("run", folder, timeout=60)
        assert r.returncode in (0, 2), (label, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, (label, r.stderr)
        events = parse_events(r.stdout)  # every line is JSON
        assert events[-1]["event"] == ("done" if r.returncode == 0 else "error"), (label, events)
