"""Exercise pacing: does ``twin exercise`` keep model time within one coupling step of the paced
target, and does a decision act at the next coupling step? One JSON line per measurement.

Runs the real command (``python -m twin exercise scenarios/exercises/phuninh_dambreak.yaml``, the
Tam Kỳ dam break, at ``--resolution`` m, ``--speed`` model s per wall s) in its own process pinned to
``--cores`` CPUs (OpenMP threads as many), for ``--wall`` seconds of paced running, then stops it
(SIGTERM: a checkpoint is left). Half-way a seat posts a decision through the API.

Lines:

- ``paced``: the session's lag behind the target after every step (``lag_steps_max``,
  ``lag_steps_p95``, in coupling steps; the issue asks for max <= 1; ``steps_over_one``: how many
  steps ended more than one step behind), steps taken, model time reached, ``keeps_pace``.
- ``decision``: the model time when the session queued it (``queued_t_s``: the start of the next
  coupling step to run), the time the API said it acts at, the time ``decisions.parquet`` says it
  acted at (``acted_at_next_step``: all three equal), and the wall seconds from the POST to its 202
  answer and to seeing it applied.

Every line carries the load average (1, 5 and 15 min) at the start and at the end of the paced
running: the machine may be shared, and a load above the cores given shows in the lag.
- ``ratio``: the reference measured in the same invocation: the mean wall time of one coupling step
  as the session measured it (manifest ``wall_time_s`` / steps), against the wall time a step may
  take at this speed (``dt / speed``): ``headroom`` > 1 keeps pace.

    python benchmarks/exercise_pacing.py                 # 100 m, speed 60, 2 cores, 180 s
    python benchmarks/exercise_pacing.py --wall 60 --resolution 200
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
EXERCISE = REPO / "scenarios" / "exercises" / "phuninh_dambreak.yaml"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _emit(d: dict) -> None:
    d.setdefault("benchmark", "exercise_pacing")
    d.setdefault("load_avg_1min", os.getloadavg()[0])
    print(json.dumps(d), flush=True)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wall", type=float, default=180.0, help="wall seconds of paced running (default 180)")
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--resolution", type=float, default=100.0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--exercise", type=Path, default=EXERCISE)
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="exercise-pacing-"))
    out = tmp / "run"
    port = _port()
    env = dict(os.environ, OMP_NUM_THREADS=str(args.cores), PYTHONPATH=str(REPO))
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    argv_ = [sys.executable, "-m", "twin", "exercise", str(args.exercise), "--speed", str(args.speed), "--port",
             str(port), "--out", str(out), "--set", f"resolution_m={args.resolution:g}"]
    log = open(tmp / "exercise.log", "w")
    t_start = time.monotonic()
    proc = subprocess.Popen(argv_, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    url = f"http://127.0.0.1:{port}/api/v1/"
    try:
        token = None
        while token is None:
            text = (tmp / "exercise.log").read_text()
            for line in text.splitlines():
                if line.startswith("  commander: "):
                    token = line.split()[1]
            if proc.poll() is not None:
                raise SystemExit(f"twin exercise exited:\n{text}")
            time.sleep(0.3)
        h = {"Authorization": f"Bearer {token}"}
        http = requests.Session()

        def session() -> dict:
            return http.get(url + "session", headers=h, timeout=60).json()

        while (s := session())["state"] == "building":
            if proc.poll() is not None:
                raise SystemExit("twin exercise exited while building:\n" + (tmp / "exercise.log").read_text())
            time.sleep(0.5)
        if s["state"] != "running":
            raise SystemExit(f"session not running: {s}")
        build_s = time.monotonic() - t_start
        load_start = _load()
        t_run0 = time.monotonic()
        time.sleep(args.wall / 2)
        # a seat's decision half-way: when does it act?
        before = session()
        w0 = time.monotonic()
        r = http.post(url + "decisions", headers=h, timeout=60,
                      json={"type": "warning", "channel": "cell_broadcast", "area": ["Hương Trà"]})
        w_202 = time.monotonic() - w0
        if r.status_code != 202:
            raise SystemExit(f"decision refused: {r.status_code} {r.text}")
        acc = r.json()
        did = acc["decision_id"]
        applied_wall = None
        while time.monotonic() - t_run0 < args.wall:
            if applied_wall is None:
                log_ = http.get(url + "decisions", headers=h, timeout=60).json()["decisions"]
                if any(d["decision_id"] == did for d in log_):
                    applied_wall = time.monotonic() - w0
            time.sleep(0.25)
        final = session()
        load_end = _load()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(300)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    import pandas as pd

    dec = pd.read_parquet(out / "decisions.parquet")
    row = dec[dec["decision_id"] == did].iloc[0]
    man = json.loads((out / "manifest.json").read_text())
    dt = float(final["dt_s"])
    lag = final["lag_steps"]
    common = {"exercise": args.exercise.name, "resolution_m": args.resolution, "speed": args.speed,
              "cores": args.cores, "coupling_step_s": dt, "python": platform.python_version(),
              "load_avg_start": load_start, "load_avg_end": load_end}
    _emit({**common, "case": "paced", "build_wall_s": round(build_s, 2), "paced_wall_s": args.wall,
           "model_time_reached_s": final["t_s"], "target_t_s": final.get("target_t_s"), "steps": lag["steps"],
           "lag_steps_max": lag["max"], "lag_steps_p95": lag["p95"], "lag_steps_last": lag["last"],
           "steps_over_one": lag.get("over_one"),
           "keeps_pace": bool(lag["max"] is not None and lag["max"] <= 1.0)})
    queued = float(acc["queued_t_s"])
    _emit({**common, "case": "decision", "status_t_s_before_post": before["t_s"], "queued_t_s": queued,
           "acts_at_s": acc["acts_at_s"], "acted_t_s": float(row["t_s"]),
           "acted_at_next_step": float(row["t_s"]) == float(acc["acts_at_s"]) == queued,
           "wall_s_to_202": round(w_202, 3), "wall_s_to_applied": None if applied_wall is None else round(applied_wall, 3),
           "acted_as_announced": float(row["t_s"]) == float(acc["acts_at_s"])})
    steps = int(man.get("iteration", 0))
    step_wall = float(man.get("wall_time_s", 0.0)) / max(steps, 1)
    budget = dt / args.speed
    _emit({**common, "case": "ratio", "reference": "mean wall time of one coupling step (manifest)",
           "step_wall_s": round(step_wall, 4), "step_budget_s": budget,
           "headroom": round(budget / step_wall, 3) if step_wall > 0 else None,
           "phase_wall_s": man.get("phase_wall_s")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
