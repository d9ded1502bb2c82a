"""The shared per-step fields (``Simulation(share_fields=True)``, the default): the depth and speed on the
twin's grid are computed once per coupled step (with subgrid topography: one downscaling instead of one
per consumer) and handed read-only to roads, people, services, callbacks and recorders. They change no
number: a coupled subgrid run with and without them writes identical fields, tables and KPIs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from twin.build import build_twin
from twin.scenario import load_scenario
from twin.simulation import NumericalInstability, Simulation

ROOT = Path(__file__).resolve().parents[2]
MOLAVE = ROOT / "scenarios" / "tamky_molave_2020.yaml"
# Tam Kỳ coupled (flood 300 m on tables of the 100 m city, traffic, people, services), short, wet early
FAST = ["resolution_m=300", "flood.subgrid_factor=3", "flood.dtype=float64", "start=2020-10-28T08:00",
        "duration=30min", "coupling_step=5min", "flood.rain.time_shift=3h", "flood.rain.rain_scale=10",
        "outputs.checkpoint_every=null", "outputs.png=false", "outputs.fields_every=10min",
        "outputs.tables_every=10min", "outputs.kpis_every=10min", "interventions.0.at=0", "interventions.1.at=10min"]


def _outputs(run: Path) -> dict:
    out: dict = {}
    with xr.open_dataset(run / "fields.nc", decode_times=False) as ds:
        out["fields"] = {v: ds[v].values.copy() for v in ds.data_vars if "time" in ds[v].dims}
    # (decisions.parquet logs the wall-clock time a decision was applied: not a model output)
    out["tables"] = {p.name: pd.read_parquet(p).drop(columns=["wall_time"], errors="ignore")
                     for p in sorted(run.glob("*.parquet"))}
    kp = json.loads((run / "kpis.json").read_text())
    out["kpis"] = {k: v for k, v in kp.items() if "wall" not in k}
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same scenario run with and without shared fields; the downscalings each run did, counted."""
    tmp = tmp_path_factory.mktemp("shared")
    sc = load_scenario(MOLAVE, FAST)
    sims, calls = {}, {}
    for share in (True, False):
        tw = build_twin(sc)
        n: list[int] = []
        real = tw.flood.fine_depth
        tw.flood.fine_depth = lambda real=real, n=n: (n.append(1), real())[1]
        sim = Simulation(tw, out_dir=tmp / f"share{share}", share_fields=share)
        sim.run()
        del tw.flood.fine_depth
        sims[share], calls[share] = sim, len(n)
    return sims, tmp, calls


def test_shared_fields_change_no_output(both):
    sims, tmp, _ = both
    on, off = sims[True], sims[False]
    assert on.twin.flood.subgrid is not None and on.twin.people is not None and on.twin.services is not None
    assert on.twin.traffic is not None and on.iteration == off.iteration == 6
    assert float(on.twin.depth().max()) > 0.3, "the run must wet the city for the comparison to mean anything"
    a, b = _outputs(tmp / "shareTrue"), _outputs(tmp / "shareFalse")
    assert a["fields"].keys() == b["fields"].keys() and {"depth", "speed", "hazard"} <= set(a["fields"])
    for k in a["fields"]:
        np.testing.assert_array_equal(a["fields"][k], b["fields"][k], err_msg=k)
    assert a["tables"].keys() == b["tables"].keys() and "people.parquet" in a["tables"]
    for k in a["tables"]:
        pd.testing.assert_frame_equal(a["tables"][k], b["tables"][k], obj=k)
    assert a["kpis"] == b["kpis"]
    np.testing.assert_array_equal(on.twin.people.hr, off.twin.people.hr)
    np.testing.assert_array_equal(on.twin.link_depth, off.twin.link_depth)


def test_the_shared_depth_is_computed_once_per_step_and_read_only(both):
    sims, _, _ = both
    tw = sims[True].twin
    calls = []
    real = tw.flood.fine_depth

    def counted():
        calls.append(1)
        return real()

    tw.flood.fine_depth = counted
    try:
        # outside a step: computed on every call, a fresh writable array each time
        a, b = tw.depth(), tw.depth()
        assert len(calls) == 2 and a is not b and a.flags.writeable
        tw.open_field_cache()
        c, d = tw.depth(), tw.depth()
        assert len(calls) == 3 and c is d and not c.flags.writeable
        np.testing.assert_array_equal(c, a)
        with pytest.raises(ValueError, match="read-only"):
            c[0, 0] = 1.0
        # the guard: the flood stepped inside the window (nobody reopened the cache): recomputed
        tw.flood.run_one_step(60.0)
        e = tw.depth()
        assert len(calls) == 4 and e is not c
        np.testing.assert_array_equal(e, real())
    finally:
        tw.close_field_cache()
        del tw.flood.fine_depth


def test_a_run_computes_the_depth_once_per_step(both):
    """Roads, people, services, the NaN check and the recorders read one downscaling per step (the
    reference path computes one per consumer); the final outputs, written after the last step, add a few."""
    sims, _, calls = both
    steps = sims[True].iteration
    assert steps + 1 <= calls[True] <= steps + 1 + 3
    assert calls[False] >= 4 * steps


def test_nan_check_still_catches_inf_and_negative_depth(tmp_path):
    sc = load_scenario(MOLAVE, [*FAST, "duration=15min", "traffic=null", "people=null", "services=null", "interventions=[]"])
    for bad, what in ((np.inf, "1 NaN and 0 negative"), (-0.5, "0 NaN and 1 negative")):
        tw = build_twin(sc)
        sim = Simulation(tw)
        real = tw._depth_direct

        def poisoned(real=real, sim=sim, bad=bad):
            d = real().copy()
            if sim.iteration >= 2:
                d[5, 7] = bad
            return d

        tw._depth_direct = poisoned
        with pytest.raises(NumericalInstability, match=rf"iteration 2\): {what} depth cells, first at row 5, col 7"):
            sim.run()
