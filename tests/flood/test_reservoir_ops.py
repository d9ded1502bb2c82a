"""Phú Ninh operated as its rules say (twin.flood.reservoir_ops) and gate decisions during a run."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from twin.flood.reservoir_ops import PHU_NINH as P
from twin.flood.reservoir_ops import PoolState, operate

NOV = dt.datetime(2021, 11, 30, 6)


def test_level_volume_passes_the_design_figures():
    assert P.volume(20.44) == pytest.approx(70.3e6, rel=1e-9)
    assert P.volume(32.00) == pytest.approx(344.0e6, rel=1e-9)
    assert P.area(32.00) == pytest.approx(32.10e6, rel=1e-6)
    z = np.linspace(15, 37, 50)
    v = np.array([P.volume(a) for a in z])
    assert (np.diff(v) > 0).all()
    assert all(P.level(P.volume(a)) == pytest.approx(a, abs=1e-9) for a in z)


def test_gates_pass_their_design_discharge_and_invert():
    for g in P.gated:
        assert g.discharge(35.40, g.gate_height_m) == pytest.approx(g.design_q_m3_s, rel=1e-9)
        assert g.discharge(g.sill_m - 0.1, g.gate_height_m) == 0.0
        assert g.discharge(33.0, 0.0) == 0.0
        a = g.opening_for(33.0, 250.0)
        assert 0 < a < g.gate_height_m and g.discharge(33.0, a) == pytest.approx(250.0, rel=1e-6)
        # continuous where the water surface meets the gate lip
        h = g.gate_height_m
        assert g.discharge(g.sill_m + h - 1e-9, h) == pytest.approx(g.discharge(g.sill_m + h + 1e-9, h), rel=1e-6)


def test_guide_curve_of_the_flood_season():
    assert P.guide_ceiling(dt.datetime(2021, 11, 30)) == pytest.approx(30.50)
    assert P.guide_ceiling(dt.datetime(2021, 9, 30)) == pytest.approx(25.85)
    assert P.guide_ceiling(dt.datetime(2021, 12, 31)) == pytest.approx(32.00)


def _t(hours=48, dt_s=300.0):
    return np.arange(0.0, hours * 3600 + dt_s, dt_s)


def test_rule_holds_the_guide_level_then_caps_the_release_and_conserves_volume():
    t = _t()
    q_in = np.interp(t, [0, 12 * 3600, 24 * 3600, 48 * 3600], [100, 3000, 500, 100])
    r = operate(P, t, q_in, PoolState(30.0), start=NOV, safe_release_m3_s=800.0)
    opened = next(e["t_s"] for e in r.events if e["event"].startswith("gates opened"))
    assert r.level_m[t < opened].max() <= 30.55          # closed below the guide ceiling (30.5 m)
    assert r.release_m3_s.max() == pytest.approx(800.0, rel=1e-6)
    assert r.level_m.max() < P.design_flood_level_m
    # volume balance of the pool: V_end - V_0 = Σ (in - out) dt (forward Euler, exactly)
    dt_s = np.diff(t)
    v_end = P.volume(r.level_m[-1]) + (q_in[-1] - r.release_m3_s[-1]) * dt_s[-1]
    assert v_end - P.volume(30.0) == pytest.approx(np.sum((q_in - r.release_m3_s) * np.append(dt_s, dt_s[-1])),
                                                   rel=1e-9)


def test_emergency_release_and_fuse_breach():
    t = _t(24)
    q_in = np.full_like(t, 6000.0)                        # beyond the check flood
    r = operate(P, t, q_in, PoolState(34.0), start=NOV)
    ev = [e["event"] for e in r.events]
    assert any(e.startswith("emergency release") for e in ev)
    assert r.fuse_opened_at_s is not None
    i = np.searchsorted(t, r.fuse_opened_at_s)
    assert r.level_m[i] >= P.fuse_trigger_m and r.level_m[i - 1] < P.fuse_trigger_m
    assert (r.spill_fuse_m3_s[t > r.fuse_opened_at_s + 3600] > 0).all()


def test_manual_gates_and_restart_from_a_time_is_identical():
    t = _t(24)
    q_in = np.full_like(t, 600.0)
    gates = [(3600.0, 0, 2.0), (7200.0, 1, 4.0)]
    full = operate(P, t, q_in, PoolState(31.0), start=NOV, mode="manual", manual=gates)
    assert (full.openings_m[t < 3600] == 0).all() and (full.openings_m[t >= 7200] == [2.0, 4.0]).all()
    # re-integrating from 5 h with the same settings reproduces the run exactly
    again = operate(P, t, q_in, PoolState(31.0), start=NOV, mode="manual", manual=gates, t_from=5 * 3600.0, base=full)
    np.testing.assert_array_equal(again.level_m, full.level_m)
    np.testing.assert_array_equal(again.release_m3_s, full.release_m3_s)


def test_gate_decision_mid_run_changes_the_release_only_after_its_time():
    from pathlib import Path

    from twin.build import build_twin
    from twin.decisions import DecisionError, parse_decision
    from twin.scenario import load_scenario
    repo = Path(__file__).resolve().parents[2]
    sc = load_scenario(repo / "scenarios" / "tamky_november_release.yaml",
                       overrides=["resolution_m=400", "duration=6h"])
    tw = build_twin(sc)
    t, q0 = (np.array(a, float) for a in tw.forcing["reservoir_release"])
    d = parse_decision({"type": "reservoir_gate", "spillway": "3", "opening_m": 8.0, "at": 4 * 3600})
    d.validate(tw)
    d.apply(tw, 4 * 3600.0)
    t1, q1 = (np.array(a, float) for a in tw.forcing["reservoir_release"])
    np.testing.assert_array_equal(q1[t1 < 4 * 3600], q0[t < 4 * 3600])   # the past is kept
    assert q1[t1 >= 4 * 3600].max() > q0[t >= 4 * 3600].max() + 100       # spillway 3 fully open: more water
    with pytest.raises(DecisionError, match="opening_m"):
        parse_decision({"type": "reservoir_gate", "spillway": "2", "opening_m": 7.0}).validate(tw)  # gates 6 m
    with pytest.raises(DecisionError, match="spillway"):
        parse_decision({"type": "reservoir_gate", "spillway": "9", "opening_m": 1.0}).validate(tw)


def test_what_cannot_be_right_is_refused():
    t = _t(72)
    with pytest.raises(ValueError, match="above the dam crest 37.6 m"):    # overtopping: no level-pool answer
        operate(P, t, np.full_like(t, 9000.0), PoolState(34.0), start=NOV)
    bad = np.full_like(t, 500.0)
    bad[10] = np.nan
    with pytest.raises(ValueError, match="inflow at t = 3000 s is nan"):
        operate(P, t, bad, PoolState(31.0), start=NOV)
    with pytest.raises(ValueError, match="inflow .* must be finite and >= 0"):
        operate(P, t, np.full_like(t, -1.0), PoolState(31.0), start=NOV)
    with pytest.raises(ValueError, match="initial level 40 m"):
        operate(P, t, np.full_like(t, 100.0), PoolState(40.0), start=NOV)
    with pytest.raises(ValueError, match="increasing"):
        operate(P, t[::-1], np.full_like(t, 100.0), PoolState(31.0), start=NOV)
