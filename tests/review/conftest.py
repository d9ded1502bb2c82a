"""Fixtures for the review tests (the helpers themselves live in ``helpers.py``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import exercise_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def exercise_folder(tmp_path_factory) -> Path:
    """The small exercise run (two trainee decisions, one inject), shared by the review tests."""
    return exercise_run(tmp_path_factory.mktemp("exercise") / "run")


@pytest.fixture(scope="session")
def reviewed(exercise_folder, tmp_path_factory):
    """``twin review RUN --out REVIEW`` as a user runs it (a subprocess; forks on a Dask LocalCluster)."""
    out = tmp_path_factory.mktemp("review") / "rev"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "twin", "review", str(exercise_folder), "--out", str(out),
                        "--workers", "2"], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    return p, out
