"""A reservoir release decided during a run is drawn from the level pool.

The bug: a ``reservoir_release`` decision issued while the twin ran added its hydrograph at the outlet as
a new inflow and left Phú Ninh's level pool as it was: water from nowhere (500 m³/s for 2 h is 3.6 Mm³
the lake never lost), the lake gauge, the pool's spill and the operated rule never saw it. Now the pool
is re-integrated from the decision's time with the release added to its outflow, and the city receives
the pool's new release through the reservoir's one inflow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.build import build_twin
from twin.decisions import DecisionError, parse_decision
from twin.flood.forcing import SIMPLE_AREA_M2, reservoir_level_at
from twin.flood.reservoir_ops import PHU_NINH
from twin.scenario import ScenarioError, load_scenario
from twin.simulation import Simulation

REPO = Path(__file__).resolve().parents[2]
MOLAVE = REPO / "scenarios" / "tamky_molave_2020.yaml"          # the simple level pool, spilling
NOVEMBER = REPO / "scenarios" / "tamky_november_release.yaml"   # Phú Ninh operated by its rule
DAMBREAK = REPO / "scenarios" / "tamky_phuninh_dambreak.yaml"   # the reservoir filled on the grid
FLOOD_ONLY = ["traffic=null", "people=null", "services=null", "interventions=[]", "outputs.png=false"]


def _series(tw):
    t, q = (np.array(a, float) for a in tw.forcing["reservoir_release"])
    return t, q


@pytest.fixture
def molave():
    return build_twin(load_scenario(MOLAVE, FLOOD_ONLY + ["resolution_m=400", "duration=6h"]))


def test_the_simple_pool_loses_what_it_releases(molave):
    tw = molave
    t, q0 = _series(tw)
    _, lv0 = (np.array(a, float) for a in tw.forcing["reservoir_level_series"])
    end0 = float(tw.forcing["reservoir_level_m"])
    d = parse_decision({"type": "reservoir_release", "times": [0, 4 * 3600], "discharge_m3_per_s": [500, 500]})
    d.validate(tw)
    msg = d.apply(tw, 2 * 3600.0)
    t1, q1 = _series(tw)
    _, lv1 = (np.array(a, float) for a in tw.forcing["reservoir_level_series"])
    np.testing.assert_array_equal(t1, t)
    before = t < 2 * 3600
    np.testing.assert_array_equal(q1[before], q0[before])            # the past is kept, bit for bit
    np.testing.assert_array_equal(lv1[before], lv0[before])
    dt = float(t[1] - t[0])
    released = float(((q1 - q0) * dt).sum())
    # the prism's storage falls by what the city receives more: mass conserved to round-off
    end1 = float(tw.forcing["reservoir_level_m"])
    assert released == pytest.approx(-(end1 - end0) * SIMPLE_AREA_M2, rel=1e-9)
    # 500 m³/s for 2 h asked (3.6 Mm³); the lower pool spills less, so the city gets less than that more
    asked = 500.0 * 2 * 3600
    assert 0.5 * asked < released < asked
    assert end1 < end0 - 0.5 * asked / SIMPLE_AREA_M2
    assert q1[(t >= 2 * 3600) & (t < 4 * 3600)].min() > q0[(t >= 2 * 3600) & (t < 4 * 3600)].min() + 400
    # the lake gauge follows the new level
    assert reservoir_level_at(tw, 6 * 3600.0) == pytest.approx(float(lv1[-1]))
    assert reservoir_level_at(tw, 6 * 3600.0) < float(lv0[-1]) - 0.05
    assert "drawn from Phu Ninh" in msg and "3.60 Mm3 asked" in msg


def test_the_operated_pool_loses_what_it_releases():
    tw = build_twin(load_scenario(NOVEMBER, FLOOD_ONLY + ["resolution_m=400", "duration=6h"]))
    t, q0 = _series(tw)
    run0 = tw.forcing["reservoir_ops"]["run"]
    d = parse_decision({"type": "reservoir_release", "times": [0, 6 * 3600], "discharge_m3_per_s": [300, 300]})
    d.validate(tw)
    d.apply(tw, 3 * 3600.0)
    t1, q1 = _series(tw)
    run1 = tw.forcing["reservoir_ops"]["run"]
    before = t < 3 * 3600
    np.testing.assert_array_equal(q1[before], q0[before])
    np.testing.assert_array_equal(run1.level_m[before], run0.level_m[before])
    dt = float(t[1] - t[0])
    released = float(((q1 - q0) * dt).sum())
    # storage after the last step: the level of the last step less that step's net outflow
    v0 = PHU_NINH.volume(float(run0.level_m[-1])) + (run0.inflow_m3_s[-1] - run0.release_m3_s[-1]) * dt
    v1 = PHU_NINH.volume(float(run1.level_m[-1])) + (run1.inflow_m3_s[-1] - run1.release_m3_s[-1]) * dt
    assert released == pytest.approx(v0 - v1, rel=1e-6)
    assert released > 0.3 * 300 * 3 * 3600                    # the rule keeps part of it back, not all
    assert run1.level_m[-1] < run0.level_m[-1]
    assert reservoir_level_at(tw, 6 * 3600.0) == pytest.approx(float(run1.level_m[-1]))


def test_the_city_receives_the_pools_new_release_from_the_decision_on(tmp_path):
    """Through a running simulation: nothing changes before the decision (bit-equal inflow volume), and
    the flood model's extra inflow afterwards is the pool's extra release over that time (2 %)."""
    def run(name, decide):
        sc = load_scenario(MOLAVE, FLOOD_ONLY + ["resolution_m=400", "duration=2h", "outputs.fields=[]"])
        sim = Simulation(build_twin(sc), out_dir=tmp_path / name)
        sim.run(until=3600)
        before = sim.twin.flood.volume_balance()["inflow_m3"]
        t, q_before = _series(sim.twin)
        if decide:
            sim.submit({"type": "reservoir_release", "times": [0, 7200], "discharge_m3_per_s": [400, 400]})
        sim.run()
        return sim, before, q_before

    base, in0, _ = run("base", False)
    rel, in1, q_old = run("rel", True)
    assert in1 == in0
    t, q_new = _series(rel.twin)
    win = (t >= 3600) & (t <= 7200)
    expected = float(np.trapezoid((q_new - q_old)[win], t[win]))
    got = rel.twin.flood.volume_balance()["inflow_m3"] - base.twin.flood.volume_balance()["inflow_m3"]
    assert got == pytest.approx(expected, rel=0.02)
    assert 0.5 * 400 * 3600 < got < 400 * 3600
    row = [r for r in rel.twin.decisions.log if r["type"] == "reservoir_release"][0]
    assert row["outcome"] == "applied" and "drawn from Phu Ninh" in row["message"]


def test_a_release_the_pool_does_not_hold_is_refused_and_changes_nothing(molave):
    """The simple pool is a prism with no water below the dead level: 30,000 m³/s for 5 h (540 Mm³) would
    take it from ~32.5 m to ~16 m; refused naming the level, and the forcing is as it was."""
    tw = molave
    t, q0 = _series(tw)
    lv0 = np.array(tw.forcing["reservoir_level_series"][1], float)
    d = parse_decision({"type": "reservoir_release", "times": [0, 6 * 3600], "discharge_m3_per_s": [30000, 30000]})
    with pytest.raises(ValueError, match=r"below the dead level 20.44 m"):
        d.apply(tw, 3600.0)
    np.testing.assert_array_equal(_series(tw)[1], q0)
    np.testing.assert_array_equal(np.array(tw.forcing["reservoir_level_series"][1], float), lv0)


def test_a_release_elsewhere_or_from_a_lake_on_the_grid_is_refused(molave, tmp_path):
    with pytest.raises(DecisionError, match=r"reservoir_release\.outlet: .*releases at its outlet"):
        parse_decision({"type": "reservoir_release", "outlet": "Bàn Thạch", "times": [0, 3600],
                        "discharge_m3_per_s": [100, 100]}).validate(molave)
    # a release in a dam-break scenario (the lake on the grid) would add water without lowering the lake
    with pytest.raises(ScenarioError, match="in_grid"):
        load_scenario(DAMBREAK, ["interventions=[{type: reservoir_release, times: [0, 3600], "
                                 "discharge_m3_per_s: [100, 100]}]"])
