"""The forecast tests' city and base run: the simulation tests' valley (tests/sim/helpers.py) with a
stage gauge, two wards (west/east halves, population, polygons) and a base run with checkpoints."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from tests.sim.helpers import SCENARIO, X0, Y0, small_city

RULES = """
rules:
  - {area: all, threshold_m: 0.1, probability: 0.3, within: 20min, severity: Severe}
  - {area: East, threshold_m: 0.1, probability: 0.3, within: 20min, severity: Extreme}
  - {area: Low Shelter, threshold_m: 0.05, probability: 0.3, within: 20min, severity: Moderate}
"""


def forecast_city():
    """The valley with a stage gauge at the creek's mouth and wards West (1) / East (2)."""
    import geopandas as gpd
    from shapely.geometry import box

    c = small_city()
    n, cell = 60, 20.0
    gauge = pd.DataFrame({"place_id": ["G1"], "name": ["Creek gauge"], "kind": ["gauge_stage"],
                          "x": [X0 + 700.0], "y": [Y0 - 600.0], "capacity": [0], "ward": ["B"], "source": "synthetic"})
    c.places = pd.concat([c.places, gauge], ignore_index=True)
    col = np.arange(n)[None, :].repeat(n, axis=0)
    c.ward_raster = np.where(col < n // 2, 1, 2)
    c.building_fraction = np.full((n, n), 0.5)
    c.population = pd.DataFrame({"ward": [1, 2], "ward_name": ["West", "East"], "households": [300, 200],
                                 "persons": [1000.0, 700.0], "share_elderly": 0.12, "share_children": 0.25,
                                 "share_motorbike": 0.7, "share_car": 0.1, "share_no_vehicle": 0.2,
                                 "mean_storeys": [2.0, 1.5]})
    half = X0 + n * cell / 2
    c.wards = gpd.GeoDataFrame({"ward": [1, 2], "ward_name": ["West", "East"]},
                               geometry=[box(X0, Y0 - n * cell, half, Y0), box(half, Y0 - n * cell, X0 + n * cell, Y0)],
                               crs="EPSG:32649")
    return c


def base_run(tmp: Path, city) -> Path:
    """A 30-min valley run with checkpoints every 10 min (and one at its end)."""
    from twin.scenario import load_scenario
    from twin.simulation import run_scenario

    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "valley.yaml"
    p.write_text(textwrap.dedent(SCENARIO))
    sc = load_scenario(p, ["outputs.checkpoint_every=10min", "outputs.png=false"])
    run_scenario(sc, out_dir=tmp / "base", city=city)
    return tmp / "base"


def write_rules(path: Path, text: str = RULES) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


LIVE_SCENARIO = """
name: valley-live-ops
city: valley
resolution_m: 20
start: 2020-10-28T07:00
duration: 3h
coupling_step: 60
seed: 1
flood:
  rain: {kind: design_storm, peak_mm_per_h: 60, duration: 30min, peak_fraction: 0.3}
people: {sample_fraction: 1.0}
outputs: {fields_every: 30min, kpis_every: 30min, tables_every: 30min, png: false}
"""


class LiveTwin:
    """``twin live`` (:func:`twin.sensors.live.run_live`) on the forecast city in a thread, paced at
    ``speed``, until the block ends (it is stopped at the end of its current step) or ``duration_s``."""

    def __init__(self, tmp: Path, broker: str, run_dir: Path, speed: float = 60.0, duration_s: float = 3 * 3600.0):
        import threading

        self.tmp, self.broker, self.run_dir, self.speed, self.duration_s = Path(tmp), broker, Path(run_dir), speed, duration_s
        self.stop = threading.Event()
        self.steps = threading.Event()      # set once the twin has finished a step (it listens by then)
        self.result: dict = {}
        self.thread = threading.Thread(target=self._run, name="test-live-twin", daemon=True)

    def _run(self) -> None:
        from twin.sensors.live import run_live

        def on_step(sim, info):
            self.steps.set()
            if self.stop.is_set():
                sim.running = False

        sc = self.tmp / "live-ops.yaml"
        sc.write_text(textwrap.dedent(LIVE_SCENARIO))
        try:
            self.result["rc"] = run_live(sc, self.broker, speed=self.speed, city=forecast_city(), run_dir=self.run_dir,
                                         duration_s=self.duration_s, on_step=on_step, client_id=f"live-{self.run_dir.name}")
        except BaseException as exc:  # reported by __exit__
            self.result["error"] = exc
            self.steps.set()

    def __enter__(self) -> LiveTwin:
        self.thread.start()
        if not self.steps.wait(120) or "error" in self.result:
            raise RuntimeError(f"the live twin did not start: {self.result.get('error')!r}")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        if self.thread.is_alive():
            raise RuntimeError("the live twin did not stop within 60 s")
        if "error" in self.result:
            raise self.result["error"]
