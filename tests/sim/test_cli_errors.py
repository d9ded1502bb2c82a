"""Every bad input a clear error (issue 14, items 11 and 12): exit code 2, one ``error: ...`` line
naming the file, key or value, never a traceback.

Each case ran into a traceback (or a silent wrong comparison, or a 5 GiB allocation) before the fix.
Most run ``twin.cli.main([...])`` in this process (an uncaught exception fails the test with its
traceback); two run ``python -m twin`` as a subprocess to check the process as a user sees it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from twin.cli import main

REPO = Path(__file__).resolve().parents[2]
DANANG = REPO / "scenarios" / "danang_rain.yaml"
MOLAVE = REPO / "scenarios" / "tamky_molave_2020.yaml"
# a Đà Nẵng flood run of two coupling steps on a 300 m grid: about a second
SMALL = ["--set", "resolution_m=300", "--set", "duration=10min", "--no-progress"]


def error_line(capsys, argv, *names, code=2) -> str:
    """Run the CLI; assert exit ``code``, one ``error:`` line (the last on stderr) containing every
    string of ``names``, and no traceback. Returns the line."""
    rc = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for n in names:
        assert str(n) in errors[0], (n, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished Đà Nẵng run (``done``) and one stopped at 5 min with a checkpoint (``partial``)."""
    d = tmp_path_factory.mktemp("runs")
    assert main(["run", str(DANANG), *SMALL, "--quiet", "--out", str(d / "done")]) == 0
    assert main(["run", str(DANANG), *SMALL, "--quiet", "--set", "outputs.checkpoint_every=5min",
                 "--until", "5min", "--out", str(d / "partial")]) == 0
    assert (d / "done" / "kpis.json").is_file() and (d / "done" / "max_depth.tif").is_file()
    assert len(list((d / "partial" / "checkpoints").glob("ckpt-*.npz"))) == 1
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------------------
# twin run: arguments and scenario keys
# --------------------------------------------------------------------------------------------
LEVEE = "interventions=[{{type: levee, at: 0, crest_m: 3{crs}, polyline: [[{x}, {y}], [{x1}, {y}]]}}]"

SCENARIO_CASES = {
    "until": (DANANG, ["--until", "soon"], ["--until", "'soon'"]),
    "set into a value": (DANANG, ["--set", "name.x=1"], [str(DANANG), "name.x", "danang_rain", "not a section"]),
    "fields_every": (DANANG, ["--set", "outputs.fields_every=7min"],
                     [str(DANANG), "outputs.fields_every", "420 s", "coupling_step (300 s)"]),
    "checkpoint_every": (DANANG, ["--set", "outputs.checkpoint_every=1min"], ["outputs.checkpoint_every", "60 s"]),
    "traffic.dt": (MOLAVE, ["--set", "traffic.dt=7"], [str(MOLAVE), "traffic.dt (7 s)", "coupling_step (120 s)"]),
    "reroute": (MOLAVE, ["--set", "traffic.reroute_interval=301"], ["traffic.reroute_interval (301 s)", "traffic.dt"]),
    "levee nan": (DANANG, ["--set", LEVEE.format(x=".nan", x1=200000, y=1770000, crs="")],
                  ["interventions.0.levee.polyline", "finite", "nan"]),
    # one vertex on the map, one off the Earth: the levee ran silently across the whole map before
    "levee vertex out of the CRS": (DANANG, ["--set", LEVEE.format(x="1e12", x1=200000, y=1770000, crs="")],
                                    ["interventions.0.levee.polyline", "outside the coordinate range of EPSG:32649",
                                     "1000000000000.0"]),
    # longitude 500: pyproj wrapped it to x = 3,874,807 m before
    "levee vertex out of EPSG:4326": (DANANG, ["--set", LEVEE.format(x="500", x1=108.2, y=16.0, crs=", crs: 'EPSG:4326'")],
                                      ["interventions.0.levee.polyline", "outside the coordinate range of EPSG:4326",
                                       "500.0"]),
    "resolution": (DANANG, ["--set", "resolution_m=-3"], [str(DANANG), "resolution_m", "-3"]),
}


@pytest.mark.parametrize("case", list(SCENARIO_CASES))
def test_run_refuses_bad_arguments_and_keys_in_one_line(case, capsys, tmp_path):
    scenario, extra, names = SCENARIO_CASES[case]
    error_line(capsys, ["run", scenario, *SMALL, *extra, "--out", tmp_path / "r"], *names)
    if not case.startswith("levee"):
        assert not (tmp_path / "r").exists()  # refused before anything ran


def test_run_refuses_a_folder_or_a_binary_file_as_the_scenario(capsys, tmp_path):
    error_line(capsys, ["run", tmp_path, *SMALL], str(tmp_path), "folder")
    binary = tmp_path / "image.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    error_line(capsys, ["run", binary, *SMALL], str(binary), "not UTF-8")
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("name: [unclosed\n  city: : :\n")
    error_line(capsys, ["run", garbage, *SMALL], str(garbage), "not valid YAML")
    error_line(capsys, ["run", tmp_path / "missing.yaml", *SMALL], "missing.yaml", "not found")


def test_run_check_validates_without_building(capsys):
    assert main(["run", str(DANANG), "--check", "--set", "resolution_m=300"]) == 0
    out, err = capsys.readouterr()
    assert "danang_rain is valid" in out and "91 x 84 cells of 300 m" in out and err == ""


# --------------------------------------------------------------------------------------------
# fork and resume
# --------------------------------------------------------------------------------------------
def test_fork_refuses_a_bad_time(runs, capsys, tmp_path):
    error_line(capsys, ["fork", runs / "done", "--at", "soon", "--out", tmp_path / "f"], "--at", "'soon'")
    error_line(capsys, ["fork", runs / "done", "--at", "7min", "--out", tmp_path / "f"],
               "fork time 420 s", "coupling step 300 s")
    error_line(capsys, ["fork", tmp_path / "nowhere", "--at", "5min", "--out", tmp_path / "f"],
               "nowhere", "not a run folder")
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "random", "foreign npz"])
def test_resume_reports_a_damaged_checkpoint_in_one_line(damage, runs, capsys, tmp_path):
    run = _copy(runs / "partial", tmp_path / "partial")
    ck = next((run / "checkpoints").glob("ckpt-*.npz"))
    raw = ck.read_bytes()
    if damage == "truncated":
        ck.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        ck.write_bytes(b"")
    elif damage == "random":
        ck.write_bytes(np.random.default_rng(1).bytes(4096))
    else:
        np.savez(ck, a=np.arange(3))
    error_line(capsys, ["run", "--resume", run, "--no-progress"], str(ck), "checkpoint")


def test_resume_of_a_folder_that_is_no_run(capsys, tmp_path):
    error_line(capsys, ["run", "--resume", tmp_path, "--no-progress"], str(tmp_path), "checkpoint")


# --------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------
def _kpis_truncated(p: Path):
    p.write_text(p.read_text()[:100])


def _kpis_list(p: Path):
    p.write_text("[1, 2, 3]")


def _kpis_wrong_number(p: Path):
    kp = json.loads(p.read_text())
    kp["flooded_area_max_m2"] = "lots"
    p.write_text(json.dumps(kp))


def _kpis_wrong_section(p: Path):
    kp = json.loads(p.read_text())
    kp["volume_balance"] = [1, 2]
    p.write_text(json.dumps(kp))


def _kpis_wrong_item(p: Path):
    kp = json.loads(p.read_text())
    kp["flooded_area_final_m2"] = {"0.1-0.3m": "x"}
    p.write_text(json.dumps(kp))


def _kpis_binary(p: Path):
    p.write_bytes(b"\xff\xfe\x00garbage")


COMPARE_CASES = {
    "truncated": (_kpis_truncated, ["not valid JSON", "truncated"]),
    "a list": (_kpis_list, ["expected a JSON object", "list"]),
    "a string for a number": (_kpis_wrong_number, ["flooded_area_max_m2", "'lots'"]),
    "a list for a section": (_kpis_wrong_section, ["volume_balance", "[1, 2]"]),
    "a string in a section": (_kpis_wrong_item, ["flooded_area_final_m2.0.1-0.3m", "'x'"]),
    "binary": (_kpis_binary, ["not UTF-8"]),
}


@pytest.mark.parametrize("case", list(COMPARE_CASES))
def test_compare_reports_a_damaged_kpis_json(case, runs, capsys, tmp_path):
    damage, names = COMPARE_CASES[case]
    b = _copy(runs / "done", tmp_path / "b")
    damage(b / "kpis.json")
    error_line(capsys, ["compare", runs / "done", b], str(b / "kpis.json"), *names)
    error_line(capsys, ["compare", b, runs / "done"], str(b / "kpis.json"), *names)


def test_compare_reports_a_bad_geotiff(runs, capsys, tmp_path):
    b = _copy(runs / "done", tmp_path / "b")
    tif = b / "max_depth.tif"
    tif.write_bytes(tif.read_bytes()[:300])
    error_line(capsys, ["compare", runs / "done", b], str(tif), "GeoTIFF")
    tif.write_text("not a tiff")
    error_line(capsys, ["compare", runs / "done", b], str(tif), "GeoTIFF")


def test_compare_refuses_runs_of_different_cities_unless_forced(runs, capsys, tmp_path):
    other = tmp_path / "tamky"
    assert main(["run", str(MOLAVE), "--quiet", "--no-progress", "--out", str(other), "--set", "resolution_m=300",
                 "--set", "duration=4min", "--set", "traffic=null", "--set", "people=null", "--set", "services=null",
                 "--set", "interventions=[]"]) == 0
    capsys.readouterr()
    error_line(capsys, ["compare", runs / "done", other], "'danang'", "'tamky'", "--force")
    assert not list(other.glob("compare_*"))
    rc = main(["compare", str(runs / "done"), str(other), "--force"])
    out, err = capsys.readouterr()
    assert rc == 0 and "KPI" in out
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    # the different city first, then what else differs (grid, duration, start: twin.workflows.compare.run_differences)
    assert "'danang'" in warnings[0] and "'tamky'" in warnings[0], err
    assert [w.split(":")[1].strip() for w in warnings[1:]] == ["different grids", "different durations",
                                                               "different start times"], err


def test_compare_of_the_same_city_has_no_warning(runs, capsys, tmp_path):
    b = _copy(runs / "done", tmp_path / "b")
    assert main(["compare", str(runs / "done"), str(b), "--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["cities"] == ["danang", "danang"] and res["warnings"] == [] and "warning" not in err


# --------------------------------------------------------------------------------------------
# ensemble
# --------------------------------------------------------------------------------------------
ENSEMBLE_CASES = {
    "no members": (["--members", "0"], ["--members 0"]),
    "too many members": (["--members", "10000000"], ["--members 10000000"]),
    "thresholds": (["--members", "2", "--thresholds", "a,b"], ["--thresholds 'a,b'", "'a'"]),
    "negative threshold": (["--members", "2", "--thresholds", "0.1,-1"], ["'-1'"]),
    "vary syntax": (["--members", "2", "--vary", "flood.rain.peak_mm_per_h=60-120"], ["--vary", "lo..hi"]),
    "vary number": (["--members", "2", "--vary", "flood.rain.peak_mm_per_h=1.2.3..4"], ["--vary", "numbers"]),
    # member 0 (300 m) is valid; member 1 (5000 m) is not: refused before member 0 runs
    "vary out of range": (["--members", "2", "--vary", "resolution_m=300..5000"],
                          ["member 001", "resolution_m", "5000", "nothing was run"]),
    "workers": (["--members", "2", "--workers", "-1"], ["--workers -1"]),
}


@pytest.mark.parametrize("case", list(ENSEMBLE_CASES))
def test_ensemble_refuses_bad_arguments_before_running_any_member(case, capsys, tmp_path):
    extra, names = ENSEMBLE_CASES[case]
    out = tmp_path / "ens"
    error_line(capsys, ["ensemble", DANANG, "--serial", "--set", "duration=10min", "--set", "resolution_m=300",
                        "--out", out, *extra], *names)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# memory (item 12)
# --------------------------------------------------------------------------------------------
def test_resolution_1m_is_refused_before_any_allocation(capsys, monkeypatch):
    import twin.city
    import twin.memory

    def no_load(*a, **k):
        raise AssertionError("load_city must not be called: the grid would be allocated")

    monkeypatch.setattr(twin.city, "load_city", no_load)
    monkeypatch.setattr(twin.memory, "available_memory", lambda: 16 * 1024**3)
    monkeypatch.delenv("TWIN_ALLOW_LARGE", raising=False)
    t0 = time.perf_counter()
    line = error_line(capsys, ["run", MOLAVE, "--set", "resolution_m=1", "--no-progress", "--out", "/nonexistent/r"],
                      "resolution_m=1", "25,800 x 26,100 = 673,380,000 cells", "16.0 GiB available",
                      "--allow-large", "TWIN_ALLOW_LARGE=1")
    assert time.perf_counter() - t0 < 10
    # the estimate: cells x bytes per cell (float32 inertial flood, city layers, 12 records of 3 fields)
    est = twin.memory.estimate_memory(__import__("twin.scenario").scenario.load_scenario(MOLAVE, ["resolution_m=1"]))
    assert 673_380_000 * 200 < est.total < 673_380_000 * 400
    assert f"{est.total / 1024**3:,.1f} GiB" in line


def test_a_huge_traffic_demand_is_refused_before_building(capsys, monkeypatch):
    """1e9 background trips a day (12 M trips in 10 min at noon) took 20 GB before it was stopped; the
    scenario schema now caps the key at 1e8 a day, and 1e8 (1.2 M trips in 10 min) still does not fit
    in 4 GiB: refused by the estimate before anything is built."""
    import twin.memory

    monkeypatch.setattr(twin.memory, "available_memory", lambda: 4 * 1024**3)
    monkeypatch.delenv("TWIN_ALLOW_LARGE", raising=False)
    error_line(capsys, ["run", DANANG, *SMALL, "--set", "traffic={dt: 2, background_trips_per_day: 1e8}",
                        "--out", "/nonexistent/r"], "roads and traffic", "4.0 GiB available")


def test_allow_large_lets_the_build_go_on(capsys, monkeypatch):
    """--allow-large (CLI) and TWIN_ALLOW_LARGE=1 (Python API) skip the refusal: the build goes on to
    load the city (here stopped by a stand-in load_city)."""
    import twin.city
    import twin.memory
    from twin.build import build_twin
    from twin.memory import MemoryEstimateError
    from twin.scenario import load_scenario

    def sentinel(*a, **k):
        raise ValueError("load_city reached")

    monkeypatch.setattr(twin.city, "load_city", sentinel)
    monkeypatch.setattr(twin.memory, "available_memory", lambda: 16 * 1024**3)
    monkeypatch.delenv("TWIN_ALLOW_LARGE", raising=False)
    error_line(capsys, ["run", MOLAVE, "--set", "resolution_m=1", "--allow-large", "--out", "/nonexistent/r"],
               "load_city reached")
    assert "TWIN_ALLOW_LARGE" not in os.environ  # the flag holds for the command only
    sc = load_scenario(MOLAVE, ["resolution_m=1"])
    with pytest.raises(MemoryEstimateError, match="673,380,000 cells"):
        build_twin(sc)
    monkeypatch.setenv("TWIN_ALLOW_LARGE", "1")
    with pytest.raises(ValueError, match="load_city reached"):
        build_twin(sc)


def test_memory_estimate_is_close_to_the_shipped_scenarios_and_passes_them():
    from twin.memory import check_memory
    from twin.scenario import load_scenario

    est = check_memory(load_scenario(DANANG), available=2 * 1024**3)  # a 2 GiB machine runs the shipped 30 m run
    assert est.shape == (910, 842) and est.cells == 766_220
    # measured on Đà Nẵng (inertial, float32, 3 fields, 12 records): peak RSS grows by 225 bytes per
    # cell from 30 m to 15 m; the estimate may be above that (a margin), not far below
    sc = load_scenario(DANANG, ["outputs.fields=[depth, speed, hazard]", "outputs.chunk_records=12"])
    est = check_memory(sc, available=2 * 1024**3)
    assert 225 <= est.total / est.cells <= 450


# --------------------------------------------------------------------------------------------
# the last line of defence in twin.cli.main
# --------------------------------------------------------------------------------------------
def _raiser(exc):
    def cmd(args):
        raise exc
    return cmd


@pytest.mark.parametrize("exc,names", [
    ("checkpoint", ["x.npz: damaged", "second line"]),
    ("scenario", ["s.yaml: flood.solver"]),
    ("decision", ["interventions.0"]),
    ("missing", ["no such file", "nowhere.yaml"]),
    ("permission", ["Permission denied"]),
])
def test_main_reports_project_errors_in_one_line(exc, names, capsys, monkeypatch):
    import twin.workflows.cli as wcli
    from twin.decisions import DecisionError
    from twin.output.state_io import CheckpointError
    from twin.scenario import ScenarioError

    e = {"checkpoint": CheckpointError("x.npz: damaged\n  second line"),
         "scenario": ScenarioError("invalid scenario:\n  s.yaml: flood.solver: no (value 'magic')"),
         "decision": DecisionError("interventions.0: no such place"),
         "missing": FileNotFoundError(2, "no such file", "nowhere.yaml"),
         "permission": PermissionError(13, "Permission denied", "/root/x")}[exc]
    monkeypatch.setattr(wcli, "_cmd_compare", _raiser(e))
    error_line(capsys, ["compare", "a", "b"], *names)


# --------------------------------------------------------------------------------------------
# as a user sees it: a process
# --------------------------------------------------------------------------------------------
def test_the_process_exits_2_with_one_line_and_no_traceback(tmp_path):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    for args, name in ((["run", str(DANANG), "--until", "soon"], "soon"), (["run", str(tmp_path)], str(tmp_path))):
        p = subprocess.run([sys.executable, "-m", "twin", *args], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], p.stderr
