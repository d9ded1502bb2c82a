"""Fixtures: a real mosquitto broker on 127.0.0.1 (free port, own config), stopped by PID, and the
subprocesses a test starts. The helpers the tests import are in ``helpers.py``."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sensors.helpers import MOSQUITTO, close_pipes, start_mosquitto, stop_pid


@pytest.fixture
def broker(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is required (apt-get install mosquitto)")
    proc, port = start_mosquitto(tmp_path)
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop_pid(proc)


@pytest.fixture
def procs():
    """Subprocesses a test starts; any still running at teardown are killed by PID."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        close_pipes(p)
