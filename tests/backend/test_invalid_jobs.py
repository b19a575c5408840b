"""A bad job ends with one `error` event of kind invalid_job, exit code 2, and no out/."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from blender_animate import job as jobio
from tests.backend.jobs import parse_events, run_backend, save_png


def _corrupt_json(job):
    (job / "job.json").write_text("{ this is not json")
    return "job.json"


def _schema(job):
    data = json.loads((job / "job.json").read_text())
    data["schema_version"] = 99
    (job / "job.json").write_text(json.dumps(data))
    return "schema_version 99"


def _missing_reference(job):
    (job / "reference.png").unlink()
    return "reference.png"


def _unreadable_image(job):
    (job / "reference.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage" * 10)
    return "not a readable image"


def _wrong_size(job):
    save_png(job / "reference.png", np.zeros((32, 40, 3), np.uint8))
    return "40x32"


def _bad_conditions(job):
    cond = jobio.Conditions.load(job / "conditions.npz")
    cond.c2w = cond.c2w[:-1]  # one camera too few
    cond.save(job / "conditions.npz")
    return "c2w"


def _bad_depth(job):
    np.save(job / "depth.npy", np.ones((10, 10), np.float32))
    return "depth.npy"


def _unknown_mode_field(job):
    data = json.loads((job / "job.json").read_text())
    data["mode"] = "teleport"
    (job / "job.json").write_text(json.dumps(data))
    return "mode"


# ----------------------------------------------------------------------------------------------
# The catalogue of issue 10: every bad input a run must refuse before `started`, naming the problem.


def _set(**changes):
    """A break_it that sets job.json fields (a value of _DROP removes the field)."""

    def break_it(job):
        data = json.loads((job / "job.json").read_text())
        for name, value in changes.items():
            if value is _DROP:
                data.pop(name)
            else:
                data[name] = value
        (job / "job.json").write_text(json.dumps(data))

    return break_it


_DROP = object()


def _arrays(**changes):
    """A break_it that rewrites conditions.npz with some arrays replaced (c -> new array)."""

    def break_it(job):
        with np.load(job / "conditions.npz") as z:
            arrays = {k: z[k] for k in z.files}
        for name, change in changes.items():
            arrays[name] = change(arrays[name])
        np.savez_compressed(job / "conditions.npz", **arrays)

    return break_it


def _scaled_rotation(c2w):
    c2w = c2w.copy()
    c2w[:, :3, :3] *= 1.5
    return c2w


def _corrupt_deflate(job):
    data = bytearray((job / "conditions.npz").read_bytes())
    start = 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")
    for i in range(start + 2, start + 40):  # inside the first member's deflate stream
        data[i] ^= 0x5A
    (job / "conditions.npz").write_bytes(bytes(data))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _decompression_bomb(job):
    """A small PNG whose header says 20000 x 20000 pixels (Pillow's DecompressionBombError)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    png += _png_chunk(b"IDAT", zlib.compress(b"\0" * 60001)) + _png_chunk(b"IEND", b"")
    (job / "reference.png").write_bytes(png)


def _nested_job_json(job):
    (job / "job.json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_job_json(job):
    data = json.loads((job / "job.json").read_text())
    data["prompt"] = "a cat " * 400_000
    (job / "job.json").write_text(json.dumps(data))


def _link(name, target=None):
    """A break_it that replaces `name` with a symbolic link to its content moved elsewhere (or to
    `target`)."""

    def break_it(job):
        where = job.parent / f"outside-{name}"
        if target is None:
            (job / name).rename(where)
        (job / name).unlink(missing_ok=True)
        (job / name).symlink_to(target or where)

    return break_it


def _fifo_reference(job):
    (job / "reference.png").unlink()
    os.mkfifo(job / "reference.png")


def _jpeg_reference(job):
    from PIL import Image

    Image.new("RGB", (64, 48)).save(job / "reference.png", format="JPEG")


BAD_JOBS = {
    # The catalogue as it was
    "corrupt json": (_corrupt_json, None),
    "schema": (_schema, None),
    "missing reference": (_missing_reference, None),
    "unreadable image": (_unreadable_image, None),
    "wrong size": (_wrong_size, None),
    "bad conditions": (_bad_conditions, None),
    "bad depth": (_bad_depth, None),
    "unknown mode": (_unknown_mode_field, None),
    # 1. wrong types in job.json: each named, type before range
    "fps text": (_set(fps="fast"), 'fps must be a number, got "fast" (text)'),
    "guidance text": (_set(guidance_scale="high"), 'guidance_scale must be a number, got "high"'),
    "strength list": (_set(strength=[]), "strength must be a number, got [] (a list)"),
    "fallback_depth text": (_set(fallback_depth="3"), 'fallback_depth must be a number, got "3" (text)'),
    "schema_version text": (_set(schema_version="1"), 'schema_version must be an integer, got "1" (text)'),
    "allow_download text": (
        _set(allow_download="false"),
        'allow_download must be true or false, got "false"',
    ),
    "seed bool": (_set(seed=True), "seed must be an integer, got true (true/false)"),
    "width missing": (_set(width=_DROP), "job.json lacks the required field width"),
    "sizes missing": (
        _set(width=_DROP, height=_DROP, num_frames=_DROP),
        "job.json lacks the required fields width, height, num_frames",
    ),
    "fps NaN": (_set(fps=float("nan")), "fps must be a finite number"),
    # 2. camera and array contents
    "K fx <= 0": (_arrays(K=lambda K: K * np.array([-1.0, 1, 1])[:, None]), "focal length <= 0"),
    "K zeros": (_arrays(K=np.zeros_like), "K of frame 0 has a focal length <= 0"),
    "c2w scaled": (_arrays(c2w=_scaled_rotation), "the rotation of c2w frame 0 is not orthonormal"),
    "tracks text": (_arrays(tracks=lambda t: t.astype(str)), "conditions.npz: tracks holds text"),
    "depth text": (
        lambda job: np.save(job / "depth.npy", np.full((48, 64), "near")),
        "depth.npy holds text",
    ),
    "object array": (
        _arrays(track_radius=lambda r: np.array([None], dtype=object)),
        "track_radius holds Python objects",
    ),
    # 3. decoders
    "corrupt deflate": (_corrupt_deflate, "conditions.npz is not a readable conditions file"),
    "decompression bomb": (_decompression_bomb, "is far too large to be the reference"),
    "nested json": (_nested_job_json, "job.json nests too deeply to read"),
    "huge json": (_huge_job_json, "job.json is larger than 1024 kB"),
    "jpeg reference": (_jpeg_reference, "reference.png is not a readable image: not a PNG file"),
    # 8. links and special files in the job folder
    "linked reference": (_link("reference.png"), "reference.png is a symbolic link"),
    "linked conditions": (_link("conditions.npz"), "conditions.npz is a symbolic link"),
    "linked depth": (_link("depth.npy"), "depth.npy is a symbolic link"),
    "job.json to /dev/zero": (_link("job.json", "/dev/zero"), "job.json is a symbolic link"),
    "reference is a FIFO": (_fifo_reference, "reference.png is not a regular file"),
}


@pytest.mark.parametrize("case", list(BAD_JOBS))
def test_bad_job_is_refused_with_exit_2(make_job, case):
    break_it, expect = BAD_JOBS[case]
    if (
        "/dev/zero" in case
        and not os.path.exists("/dev/zero")
        or "FIFO" in case
        and not hasattr(os, "mkfifo")
    ):
        pytest.skip("needs /dev/zero and FIFOs")
    job = make_job(num_frames=3)
    expect = break_it(job) or expect
    r = run_backend("run", job, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    events = parse_events(r.stdout)
    # An invalid job produces only the error event (no `started`: it comes after validation).
    assert [e["event"] for e in events] == ["error"], events
    assert events[-1]["kind"] == "invalid_job"
    assert expect in events[-1]["message"]
    assert events[-1]["hint"]
    assert not (job / "out").exists()
    assert not list(job.glob(".out-*")) and not (job / ".run-lock").exists()


def test_a_linked_reference_video_is_refused(make_job, tmp_path):
    """The motion video may not point out of the job folder either (checked before decoding)."""
    job = make_job(num_frames=3, reference_video="motion.mp4")
    (tmp_path / "secret.mp4").write_bytes(b"not yours")
    (job / "motion.mp4").symlink_to(tmp_path / "secret.mp4")
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)
    assert error["kind"] == "invalid_job" and "motion.mp4 is a symbolic link" in error["message"]


def test_download_permission_must_be_a_real_boolean(make_job):
    """ "false" (a string) once counted as true and the hub was contacted: now it is refused."""
    job = make_job(num_frames=5, mode="guided")
    _set(allow_download="false", num_frames=5)(job)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)
    assert "allow_download must be true or false" in error["message"]


def test_a_job_directory_that_does_not_exist(tmp_path):
    r = run_backend("run", tmp_path / "nowhere")
    assert r.returncode == 2
    (event,) = parse_events(r.stdout)
    assert event["kind"] == "invalid_job" and "nowhere" in event["message"]


def test_an_unreadable_reference_video(make_job):
    pytest.importorskip("cv2")
    job = make_job(num_frames=3, reference_video="motion.mp4")
    (job / "motion.mp4").write_bytes(b"not a video at all" * 100)
    r = run_backend("run", job)
    assert r.returncode == 2, r.stderr
    (error,) = parse_events(r.stdout)  # found while validating: no `started` before it
    assert error["kind"] == "invalid_job" and "motion.mp4" in error["message"]
    assert not (job / "out").exists()
