"""``Twin.close()``: the CLI releases what a twin holds outside its arrays (the assimilator's DuckDB
connection and, with ``assimilation.enkf.dask``, its Dask client and LocalCluster) when a run ends.
Before, ``twin run``/``fork``/``replay`` left them to the interpreter's exit."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.cli import main
from twin.sensors import Datastream, SensorStore, Station
from twin.sensors.assimilation import Assimilator

REPO = Path(__file__).resolve().parents[2]
DANANG = REPO / "scenarios" / "danang_rain.yaml"
FIXED = ["--no-progress", "--quiet", "--set", "resolution_m=300", "--set", "coupling_step=5min",
         "--set", "duration=10min"]


def _store(tmp_path) -> Path:
    store = tmp_path / "obs.duckdb"
    with SensorStore(store) as st:
        st.register([Station("G1", x=200000.0, y=1770000.0)], [Datastream("g1-wl", "G1", "water_level", "m")])
        t = np.datetime64("2020-10-28T00:00:00") + np.arange(0, 600, 60) * np.timedelta64(1, "s")
        st.insert("g1-wl", t, np.full(t.size, 3.2))
    return store


def test_twin_run_fork_and_replay_close_the_assimilator(tmp_path, monkeypatch):
    closed, made = [], []
    real_init, real_close = Assimilator.__init__, Assimilator.close

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        made.append(self)

    def close(self):
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Assimilator, "__init__", init)
    monkeypatch.setattr(Assimilator, "close", close)
    store = _store(tmp_path)
    sensors = ["--set", "sensors.enabled=true", "--set", f"sensors.store={store}",
               "--set", "sensors.assimilation={nudging: {relaxation_time_s: 120, radius_m: 500, max_age_s: 600}}",
               "--set", "outputs.checkpoint_every=5min"]
    run = tmp_path / "run"
    assert main(["run", str(DANANG), "--out", str(run), *FIXED, *sensors]) == 0
    assert len(made) == 1 and closed == made          # the run's twin, closed once
    assert made[0]._con is None and made[0].store.con is None   # its DuckDB connections are closed
    assert main(["fork", str(run), "--at", "5min", "--out", str(tmp_path / "fork"), "--no-progress"]) == 0
    assert main(["replay", str(run), "--out", str(tmp_path / "replay"), "--no-progress", "--quiet"]) == 0
    # every twin a command built is closed: fork builds two (the base's up to the fork time, then the fork's)
    assert len(made) == 4 and sorted(map(id, closed)) == sorted(map(id, made))
    made[0].close()                                   # idempotent


def test_twin_is_a_context_manager(tmp_path):
    from twin.build import build_twin
    from twin.scenario import load_scenario

    store = _store(tmp_path)
    sc = load_scenario(DANANG, overrides=["resolution_m=300", "duration=10min", "sensors.enabled=true",
                                          f"sensors.store={store}"])
    with build_twin(sc) as tw:
        a = tw.assimilator
        assert a is not None and a.store.con is not None
    assert a.store.con is None
    tw.close()                                        # again: nothing to do, no error
