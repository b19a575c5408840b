"""Results in time with the scene: video frame i shows on the scene frame the job sampled for it.

Convention: the job's `info.sample_frames` (job.json, written by job_export) lists the scene frame
t_i (float; sub-frames when the video has more frames than the range) that video frame i was made
from, increasing. At scene frame f the result shows video frame i(f) = the last i with t_i <= f
(held until the next sample; frame 0 before the range, the last frame after it). A 97-frame range
sampled into 49 frames has t_i = 1 + 2 i, so scene frame 49 shows video frame 24.

Where Blender plays the result:
- the Sequencer strip: an image strip whose element for each scene frame is the file of i(f), so
  it spans the job's frame range (Blender's own strip retiming, `retiming_keys.add`, crashes the
  5.0 bpy module headless, so it is not used). Generate asks the generator for out/frames beside
  video.mp4 for such jobs (`generator_env`); a movie-only result keeps a plain movie strip, with a
  warning;
- camera backgrounds and image textures (ImageUser): a driver on `frame_offset` with a simple
  expression (`frame`, arithmetic and floor only: Blender evaluates it without Python, so it works
  with auto-run scripts off), and `frame_duration` set to the span, so Blender's clamp to the
  duration happens before the offset. Blender shows file number
  `frame - frame_start + frame_offset` (+1 for movies, which count from 1).

`Timing` is None when the result plays one video frame per scene frame from the range's start
(jobs without sample_frames, or a range as long as the video): then nothing is retimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...blender_animate import job as jobfile

EPS = 1e-4  # sub-frame tolerance of t_i <= f


@dataclass(frozen=True)
class Timing:
    times: tuple[float, ...]  # t_i, scene frames, increasing
    start: int  # the first scene frame the result spans (floor of t_0)
    end: int  # the last scene frame (ceil of t_last)

    @property
    def span(self) -> int:
        return self.end - self.start + 1

    @property
    def uniform(self) -> bool:
        t = self.times
        if len(t) < 3:
            return True
        step = (t[-1] - t[0]) / (len(t) - 1)
        return all(abs(t[i] - (t[0] + i * step)) < EPS for i in range(len(t)))

    def index(self, frame: float) -> int:
        """i(f): the video frame shown at scene frame `frame`."""
        i = 0
        for k, t in enumerate(self.times):
            if t <= frame + EPS:
                i = k
        return i

    def expression(self, base_offset: int) -> str:
        """The driver expression of ImageUser.frame_offset (see the module docstring); needs uniform
        samples (the camera reader spreads them evenly over the range)."""
        t0, n = self.times[0], len(self.times)
        k = (n - 1) / (self.times[-1] - t0)
        return (
            f"min(max(floor((frame - {t0!r}) * {k!r} + {EPS}), 0), {n - 1}) "
            f"- (frame - {self.start}) + {base_offset}"
        )


def timing_for(job_dir, num_frames: int) -> Timing | None:
    """The job's Timing, or None when it needs no retiming or job.json does not say (see above)."""
    try:
        spec = jobfile.read_spec(job_dir)
    except (jobfile.JobError, OSError, ValueError):
        return None
    times = (spec.info or {}).get("sample_frames")
    if not isinstance(times, list) or len(times) != num_frames or num_frames < 2:
        return None
    try:
        times = tuple(float(t) for t in times)
    except (TypeError, ValueError):
        return None
    if any(b <= a for a, b in zip(times, times[1:])):
        return None
    start = math.floor(times[0] + EPS)
    if all(abs(t - (start + i)) < EPS for i, t in enumerate(times)):
        return None  # one video frame per scene frame from the start: as imported plainly
    timing = Timing(times, start, math.ceil(times[-1] - EPS))
    return timing if timing.uniform else None


PNG_ENV = "ANIMATE_ANYTHING_PNG"  # backend/outputs.py: write out/frames beside video.mp4 when "1"


def generator_env(job_dir) -> dict | None:
    """The generator's environment for a job whose result must be retimed: out/frames is wanted
    beside video.mp4 (the strip is made of them); None (the default environment) otherwise."""
    import os

    try:
        num_frames = jobfile.read_spec(job_dir).num_frames
    except (jobfile.JobError, OSError, ValueError):
        return None
    if timing_for(job_dir, num_frames) is None:
        return None
    return {**os.environ, PNG_ENV: "1"}


def drive_frame_offset(id_data, image_user_path: str, timing: Timing, base_offset: int) -> None:
    """Drive `<image_user_path>.frame_offset` of `id_data` by the timing (replacing any driver)."""
    path = f"{image_user_path}.frame_offset"
    driver = id_data.driver_add(path).driver
    driver.type = "SCRIPTED"
    driver.expression = timing.expression(base_offset)


def clear_frame_offset_driver(id_data, image_user_path: str) -> None:
    """Remove a driver an earlier import put on that ImageUser (a re-import without retiming)."""
    anim = id_data.animation_data
    path = f"{image_user_path}.frame_offset"
    if anim is not None and any(d.data_path == path for d in anim.drivers):
        id_data.driver_remove(path)
