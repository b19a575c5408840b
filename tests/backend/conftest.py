"""Fixtures for the generator-process tests; the job writer itself lives in jobs.py (reusable)."""

from __future__ import annotations

import pytest

from tests.backend.jobs import write_job


@pytest.fixture
def make_job(tmp_path):
    """make_job(name="job", **write_job_kwargs) -> Path of a fresh valid job directory."""

    def factory(name: str = "job", **kwargs):
        return write_job(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def hide_optional(tmp_path):
    """A folder holding a sitecustomize.py that makes cv2, scipy, av and torch unimportable in any
    Python started with it first on PYTHONPATH (a meta-path finder that raises ModuleNotFoundError)."""
    folder = tmp_path / "hide_optional"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        "HIDDEN = {'cv2', 'scipy', 'av', 'torch', 'numba'}\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in HIDDEN:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (hidden by the test)', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    return str(folder)
