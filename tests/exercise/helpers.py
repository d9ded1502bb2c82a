"""Helpers the exercise tests import: a real ``twin exercise`` process, its seat tokens, API calls."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
SHORT = REPO / "scenarios" / "exercises" / "tamky_short.yaml"
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twin_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


#: a lighter twin for the tests' exercises (a fifth of the households, a 10 s traffic step): the
#: same seats, injects and decisions, less work per step and per build
LIGHT = ("--set", "people.sample_fraction=0.2", "--set", "traffic.dt=10", "--set", "traffic.background_trips_per_day=1000")


class Exercise:
    """``python -m twin exercise FILE ...`` in a process of its own; tokens read from its output."""

    def __init__(self, out: Path, *args: str, exercise: Path = SHORT, speed: float = 300.0, light: bool = True):
        self.out = Path(out)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.out.parent / f"{self.out.name}.log"
        self.argv = [sys.executable, "-m", "twin", "exercise", str(exercise), "--speed", str(speed),
                     "--port", str(self.port), "--out", str(self.out), *(LIGHT if light else ()), *args]
        self.tokens: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Exercise:
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self._logf, stderr=subprocess.STDOUT, env=twin_env(),
                                     cwd=str(REPO))
        end = time.monotonic() + 60
        while time.monotonic() < end:
            text = self.log.read_text()
            if "building the twin" in text:
                self.tokens = dict(re.findall(r"^  (\w+): (\S+)   \(", text, flags=re.M))
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"twin exercise exited {self.proc.returncode}:\n{text}")
            time.sleep(0.2)
        else:
            raise RuntimeError("twin exercise did not start:\n" + self.log.read_text())
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_logf", None) is not None:
            self._logf.close()
            self._logf = None
        return None if self.proc is None else self.proc.returncode

    def api(self, method: str, path: str, seat: str | None = "control", **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if seat is not None:
            headers["Authorization"] = f"Bearer {self.tokens[seat]}"
        with requests.Session() as s:
            return s.request(method, self.url + "/api/v1/" + path.lstrip("/"), headers=headers, timeout=60, **kw)

    def session(self, seat: str = "control") -> dict:
        r = self.api("GET", "session", seat)
        r.raise_for_status()
        return r.json()

    def wait(self, cond, timeout: float = 90.0, seat: str = "control") -> dict:
        end = time.monotonic() + timeout
        while True:
            s = self.session(seat)
            if cond(s):
                return s
            if s["state"] == "failed" or time.monotonic() > end:
                raise AssertionError(f"waited for a session state; last: {s}\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)


class Clock:
    """A fake wall clock for :class:`twin.exercise.session.PacedSession` (seconds; moved by the test)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def paced_session(tmp_path: Path, city, speed: float = 60.0, injects=(), overrides=()):
    """A :class:`PacedSession` over a real Simulation of the small valley (``tests/sim/helpers``),
    running on a fake clock, recording into ``tmp_path/run``; returns (session, clock)."""
    from tests.sim.helpers import write_scenario
    from twin.build import build_twin
    from twin.exercise.session import PacedSession, SessionConfig
    from twin.exercise.spec import Exercise as ExerciseSpec
    from twin.scenario import load_scenario
    from twin.simulation import Simulation

    sc = load_scenario(write_scenario(tmp_path), ["duration=20min", "coupling_step=60", "outputs.fields_every=10min",
                                                  "outputs.tables_every=10min", "outputs.kpis_every=10min",
                                                  *overrides])
    clock = Clock()
    s = PacedSession(SessionConfig(exercise_yaml="-", run_dir=str(tmp_path / "run"), speed=speed), clock=clock)
    s.sim = Simulation(build_twin(sc, city=city), out_dir=tmp_path / "run")
    s.sim.run(until=0.0)
    s.exercise = ExerciseSpec(scenario=sc, roles={}, injects=list(injects), objectives=[], source=tmp_path)
    s.order = s.exercise.inject_order()
    s._fire_injects()
    s.state = "running"
    s._reanchor()
    return s, clock


def advance(s, clock: Clock, wall_s: float, dt: float = 0.05) -> int:
    """Let ``wall_s`` seconds pass on the fake clock, ticking as the session loop would; steps taken."""
    steps = 0
    end = clock.t + wall_s
    while clock.t < end - 1e-12:
        clock.t = min(end, clock.t + dt)
        while s.tick():
            steps += 1
    return steps
