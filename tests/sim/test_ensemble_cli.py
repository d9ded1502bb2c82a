"""Ensembles (Dask LocalCluster vs serial), fork, compare and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.scenario import load_scenario

from .helpers import small_city, write_scenario

REPO = Path(__file__).resolve().parents[2]


def _max_depth(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def test_ensemble_of_4_on_a_local_cluster_equals_serial(tmp_path):
    from twin.workflows.ensemble import member_scenarios, run_ensemble

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["duration=10min", "outputs.png=false"])
    vary = [("flood.rain.peak_mm_per_h", 60.0, 180.0)]
    specs = member_scenarios(sc, 4, vary)
    seeds = [d["seed"] for d, _ in specs]
    assert len(set(seeds)) == 4 and [d["flood"]["rain"]["peak_mm_per_h"] for d, _ in specs] == [60.0, 100.0, 140.0, 180.0]
    par = run_ensemble(sc, 4, tmp_path / "dask", vary=vary, n_workers=2, city=city)
    ser = run_ensemble(sc, 4, tmp_path / "serial", vary=vary, serial=True, city=city)
    assert par["scheduler"].startswith("LocalCluster") and ser["scheduler"] == "serial"
    for i in range(4):
        a = _max_depth(tmp_path / "dask" / f"member-{i:03d}" / "max_depth.tif")
        b = _max_depth(tmp_path / "serial" / f"member-{i:03d}" / "max_depth.tif")
        np.testing.assert_array_equal(a, b)
        ta = json.loads((tmp_path / "dask" / f"member-{i:03d}" / "kpis.json").read_text())
        tb = json.loads((tmp_path / "serial" / f"member-{i:03d}" / "kpis.json").read_text())
        assert ta["flooded_area_m2"] == tb["flooded_area_m2"]
        assert ta["travel_time_index"] == tb["travel_time_index"]
    # more rain -> more flooded area (members really differ)
    areas = [m["flooded_area_max_m2"] for m in ser["members"]]
    assert areas == sorted(areas) and areas[0] < areas[-1]
    import xarray as xr

    ex = xr.open_dataset(tmp_path / "serial" / "exceedance.nc")
    p = ex["exceedance_probability"].sel(threshold=0.1).values
    stack = np.stack([_max_depth(tmp_path / "serial" / f"member-{i:03d}" / "max_depth.tif") for i in range(4)])
    expect = (stack > 0.1).mean(axis=0)
    ok = np.isfinite(p)
    np.testing.assert_allclose(p[ok], expect[ok])
    assert set(np.unique(p[ok])) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_fork_from_a_run_and_compare(tmp_path):
    from twin.simulation import run_scenario
    from twin.workflows.compare import compare_runs
    from twin.workflows.runs import fork_run

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["outputs.checkpoint_every=10min"])
    run_scenario(sc, out_dir=tmp_path / "base", city=city)
    assert sorted(p.name for p in (tmp_path / "base" / "checkpoints").glob("*.npz")) == [
        "ckpt-000000010.npz", "ckpt-000000020.npz", "ckpt-000000030.npz"]  # and one at the end (forecasts)
    # a levee along the creek's path from 15 min on
    fork = fork_run(tmp_path / "base", 900.0, ["interventions=[{type: pump, xy: [600300, 1749400], capacity_m3_per_s: 20, at: 15min}]"],
                    tmp_path / "fork", city=city)
    assert fork.time == 1800.0
    assert any(r["type"] == "pump" and r["outcome"] == "applied" and r["t_s"] == 900.0
               for r in fork.twin.decisions.log)
    # the fork is a whole run (its history is the base's): fields up to 15 min equal the base's,
    # fields after differ because the pump drains water
    import xarray as xr

    b = xr.open_dataset(tmp_path / "base" / "fields.nc", decode_times=False)
    f = xr.open_dataset(tmp_path / "fork" / "fields.nc", decode_times=False)
    assert list(f["time"].values) == list(b["time"].values) == [0.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0]
    for t in (0.0, 600.0, 900.0):
        np.testing.assert_array_equal(b["depth"].sel(time=t).values, f["depth"].sel(time=t).values)
    assert not np.array_equal(b["depth"].sel(time=1800.0).values, f["depth"].sel(time=1800.0).values)
    res = compare_runs(tmp_path / "base", tmp_path / "fork")
    assert "water volume at end" in res["table"] and Path(res["png"]).is_file()
    vol = next(r for r in res["rows"] if r["kpi"].startswith("water volume"))
    assert vol["b_minus_a"] < 0  # the pump removed water
    assert res["max_depth_diff_m"]["min"] < 0


def _cli(*args, cwd=None, timeout=300):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(cwd or REPO)}
    return subprocess.run([sys.executable, "-m", "twin", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_cli_help_is_complete():
    out = _cli("--help")
    assert out.returncode == 0
    from twin.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd, opts in (("run", ("--out", "--set", "--resume", "--until")), ("fork", ("--at", "--set", "--out")),
                      ("compare", ("--png", "--json")), ("ensemble", ("--members", "--vary", "--scheduler", "--serial"))):
        assert cmd in out.stdout
        h = sub.choices[cmd].format_help()
        assert h.startswith("usage: twin " + cmd)
        for opt in opts:
            assert opt in h, (cmd, opt)
        assert "example" in h or cmd == "compare"


def test_cli_reports_scenario_errors_cleanly(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ncity: danang\nstart: 2020-01-01\nduration: 1h\nflood: {solver: magic}\n")
    out = _cli("run", str(p), "--out", str(tmp_path / "r"))
    assert out.returncode == 2
    assert "flood.solver" in out.stderr and "magic" in out.stderr and str(p) in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_ctrl_c_leaves_a_checkpoint_and_resume_completes(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "run"
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    args = [sys.executable, "-m", "twin", "run", str(REPO / "scenarios" / "tamky_molave_2020.yaml"),
            "--out", str(out), "--no-progress", "--set", "resolution_m=150", "--set", "duration=6h",
            "--set", "traffic=null", "--set", "people=null", "--set", "services=null",
            "--set", "interventions=[]", "--set", "outputs.fields_every=10min", "--set", "outputs.chunk_records=1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "fields.nc").exists():
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # during the first steps: deferred to the end of a step
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "checkpoint" in err and "twin run --resume" in err
    cks = list((out / "checkpoints").glob("ckpt-*.npz"))
    assert len(cks) == 1
    res = _cli("run", "--resume", str(out), "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "completed" and man["time_s"] == 6 * 3600
    import xarray as xr

    t = xr.open_dataset(out / "fields.nc", decode_times=False)["time"].values
    assert list(t) == [600.0 * k for k in range(37)]  # no record lost or doubled across the interrupt


def test_fork_that_changes_nothing_reproduces_its_parent(tmp_path):
    """A no-op fork's KPIs cover the whole run, shared history included, and equal its parent's."""
    from twin.simulation import run_scenario
    from twin.workflows.runs import fork_run

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["outputs.checkpoint_every=10min"])
    run_scenario(sc, out_dir=tmp_path / "base", city=city)
    fork_run(tmp_path / "base", 900.0, [], tmp_path / "fork", city=city)   # a checkpoint at 10 min, re-run to 15
    a = json.loads((tmp_path / "base" / "kpis.json").read_text())
    b = json.loads((tmp_path / "fork" / "kpis.json").read_text())
    assert (a.pop("scenario"), b.pop("scenario")) == ("valley", "valley-fork")   # a fork gets its own name
    assert a == b
    for name in ("links", "trips"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "base" / f"{name}.parquet"),
                                      pd.read_parquet(tmp_path / "fork" / f"{name}.parquet"))


def test_fork_refuses_overrides_it_cannot_apply(tmp_path):
    from twin.simulation import run_scenario
    from twin.workflows.runs import fork_run

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["duration=10min", "outputs.checkpoint_every=5min"])
    run_scenario(sc, out_dir=tmp_path / "base", city=city)
    with pytest.raises(ValueError, match=r"fork: cannot apply seed, traffic\.background_trips_per_day after the fork"):
        fork_run(tmp_path / "base", 300.0, ["seed=9", "traffic.background_trips_per_day=5"], tmp_path / "f", city=city)
    assert not (tmp_path / "f").exists()


def test_resume_refuses_a_finished_run_and_changes_nothing(tmp_path):
    from twin.simulation import run_scenario
    from twin.workflows.runs import resume_run

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["duration=10min", "outputs.checkpoint_every=5min"])
    run_scenario(sc, out_dir=tmp_path / "base", city=city)
    before = {p.name: p.read_bytes() for p in (tmp_path / "base").iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="the run is finished"):
        resume_run(tmp_path / "base", city=city)
    after = {p.name: p.read_bytes() for p in (tmp_path / "base").iterdir() if p.is_file()}
    assert before == after


def test_raising_stop_time_extends_an_unrecorded_run_and_refuses_a_finished_recorded_one(tmp_path):
    from twin.build import build_twin
    from twin.simulation import Simulation

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), ["duration=10min"])
    sim = Simulation(build_twin(sc, city=city))
    sim.run()
    assert sim.time == 600.0
    sim.stop_time = 900.0
    sim.run()
    assert sim.time == 900.0 and sim.finished
    rec = Simulation(build_twin(sc, city=city), out_dir=tmp_path / "rec")
    rec.run()
    with pytest.raises(ValueError, match="cannot be extended"):
        rec.stop_time = 900.0
