"""One generator process started ahead of the next job (stdlib only).

A cold generator spends ~0.5 s importing and loading its compiled kernels before the first frame
(a third of a 720x480 preview). After a run, `prepare(command, cwd, env)` starts
``python -m backend standby ...`` (backend/standby.py), which warms up and waits for one job
folder on stdin; the next `GeneratorProcess.start()` with the same command, folder and
environment `take`s it instead of starting a process. A run of a model mode leaves one warmed
for that mode (`--warm guided`: torch and diffusers imported, ~5-10 s of its start-up), and
each one has its heap grown for the last job's frame size (`--frame-size WxH`, from that
run's started event: the first run of a process otherwise faults its memory in, 12 % of a
720x480 preview). One standby at a time: another command, Python or environment (a changed
preference) stops the old one, and the next run starts cold.

A standby's stdout is the next run's events (its first line, `{"event": "ready"}`, is dropped by
the reader); its stderr goes nowhere until its job arrives (then JOB/generator.log). It ends
when its stdin closes, which the system does when Blender ends, however it ends; `stop()` (the
add-on disabled, Blender quitting) ends it at once.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import threading

from .processes import new_process_group, stop_group

# Modes whose standby also imports torch and diffusers (`python -m backend standby --warm MODE`).
MODEL_MODES = ("guided", "animateanything")
# Variables of one job's run (backend/standby.py JOB_ENV): not the standby's environment, not
# part of what `take` matches; sent with the job line.
JOB_ENV = ("ANIMATE_ANYTHING_PNG",)

_LOCK = threading.Lock()
_spare: tuple[tuple, tuple, subprocess.Popen] | None = None  # (key, warm arguments, process)


def _key(command, cwd, env: dict) -> tuple:
    return (tuple(str(c) for c in command), str(cwd), tuple(sorted(_standby_env(env).items())))


def _standby_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in JOB_ENV}


def warm_arguments(mode: str | None = None, size: tuple[int, int] | None = None) -> list[str]:
    """The standby's arguments for a next run of `mode` at `size` (width, height): `--warm MODE`
    for a model mode, `--frame-size WxH` (its heap grown ahead for those frames)."""
    args = ["--warm", mode] if mode in MODEL_MODES else []
    if size is not None:
        args += ["--frame-size", f"{int(size[0])}x{int(size[1])}"]
    return args


def prepare(command, cwd, env: dict, warm=()) -> subprocess.Popen | None:
    """Keep a standby for `command` (argument list) run in `cwd` with `env` (JOB_ENV aside: a
    job's own, sent by `take`): the live one when it matches and was started with the same
    `warm` arguments (appended to the command, e.g. ["--warm", "guided"]; not part of what `take`
    matches), else a new one (the old one stopped). None when it cannot be started (the next run
    starts cold and reports why)."""
    global _spare
    key, warm = _key(command, cwd, env), tuple(str(a) for a in warm)
    with _LOCK:
        if _spare is not None and _spare[:2] == (key, warm) and _spare[2].poll() is None:
            return _spare[2]
        old, _spare = _spare, None
        if old is not None:
            _end(old[2])
        try:
            proc = subprocess.Popen(
                [*key[0], *warm],
                cwd=str(cwd),
                env=_standby_env(env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                **new_process_group(),
            )
        except OSError:
            return None
        _spare = (key, warm, proc)
        return proc


def take(command, cwd, env: dict, job_dir) -> subprocess.Popen | None:
    """The standby started for exactly this command, folder and environment (JOB_ENV aside),
    still alive, now the caller's: it was given `job_dir` and env's JOB_ENV variables (the line
    ``{"job": PATH, "env": {...}}`` on its stdin, which is then closed) and its stdout is that
    run's events. Else None (start cold), and a standby that does not match, or ended
    meanwhile, is stopped."""
    global _spare
    with _LOCK:
        spare, _spare = _spare, None
    if spare is None:
        return None
    key, _, proc = spare
    if key != _key(command, cwd, env) or proc.poll() is not None:
        _end(proc)
        return None
    try:
        job_env = {k: env[k] for k in JOB_ENV if k in env}
        proc.stdin.write((json.dumps({"job": str(job_dir), "env": job_env}) + "\n").encode("utf-8"))
        proc.stdin.close()
    except OSError:  # it ended after poll() looked
        _end(proc)
        return None
    return proc


def current() -> subprocess.Popen | None:
    """The standby waiting now, if any (for the status and for tests)."""
    with _LOCK:
        return _spare[2] if _spare is not None and _spare[2].poll() is None else None


def stop() -> None:
    """End the standby, if any (its group, and reaped)."""
    global _spare
    with _LOCK:
        spare, _spare = _spare, None
    if spare is not None:
        _end(spare[2])


def _end(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()  # a waiting standby exits at the end of its input
    except OSError:
        pass
    stop_group(proc, grace=0)  # it holds no files: nothing to finish
    if proc.stdout is not None:
        proc.stdout.close()


atexit.register(stop)
