"""``compare_replicates`` / ``twin compare --replicates``: differences with a 90 % paired t-interval
over common-seed replicates (issue 14, item 10)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from twin.scenario import load_scenario
from twin.workflows.compare import compare_replicates, paired_interval, replicate_seeds

from .helpers import small_city, write_scenario

REPO = Path(__file__).resolve().parents[2]
FAST = ["duration=10min", "outputs.png=false"]


def test_paired_interval_known_case():
    a = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    b = a + np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    iv = paired_interval(a, b, 0.90)
    # by hand: mean 3, sd sqrt(2.5), t(0.95, 4) = 2.1318468, half width 2.1318468 * sqrt(2.5 / 5)
    half = 2.1318468 * np.sqrt(0.5)
    assert iv["n"] == 5 and iv["mean"] == pytest.approx(3.0) and iv["sd"] == pytest.approx(np.sqrt(2.5))
    assert iv["lo"] == pytest.approx(3.0 - half, abs=1e-6) and iv["hi"] == pytest.approx(3.0 + half, abs=1e-6)
    assert iv["verdict"] == "real"
    # the same interval as scipy's paired t-test
    from scipy.stats import ttest_rel

    ci = ttest_rel(b, a).confidence_interval(0.90)
    assert (iv["lo"], iv["hi"]) == pytest.approx((ci.low, ci.high))
    assert paired_interval([0, 0, 0], [0, 0, 0]) == {"n": 3, "mean": 0.0, "sd": 0.0, "lo": 0.0, "hi": 0.0,
                                                     "verdict": "noise"}
    const = paired_interval([1.0, 2.0, 3.0], [1.1, 2.1, 3.1])   # a small deterministic effect is real
    assert const["verdict"] == "real" and const["lo"] > 0
    assert paired_interval([0, 0, 0, 0], [-1, 1, -0.5, 0.7])["verdict"] == "noise"
    assert paired_interval([1.0], [2.0])["verdict"] == "n/a"


def test_paired_interval_covers_the_true_mean_90_percent_of_the_time():
    rng = np.random.default_rng(42)
    trials, n, mu = 4000, 5, 0.3
    hits = 0
    for _ in range(trials):
        a = rng.normal(10.0, 3.0, n)
        b = a + rng.normal(mu, 1.0, n)
        iv = paired_interval(a, b, 0.90)
        hits += iv["lo"] <= mu <= iv["hi"]
    assert abs(hits / trials - 0.90) < 0.015   # binomial sd 0.0047


def test_identical_scenarios_differ_by_exactly_zero_and_noise_explains_it(tmp_path):
    sc = load_scenario(write_scenario(tmp_path), FAST)
    res = compare_replicates(sc, sc, 3, tmp_path / "same", serial=True, city=small_city())
    seeds = replicate_seeds(sc, 3)
    assert res["seeds"] == seeds and len(set(seeds)) == 3
    for i, s in enumerate(seeds):   # common random numbers: replicate i of A and of B share seed i
        for side in ("a", "b"):
            run = yaml.safe_load((tmp_path / "same" / side / f"rep-{i:03d}" / "scenario.yaml").read_text())
            assert run["seed"] == s
    rows = {r["kpi"]: r for r in res["rows"]}
    assert "travel-time index" in rows and "water volume at end [Mm³]" in rows
    for r in res["rows"]:
        assert r["n"] == 3 and r["b_minus_a"] == 0.0 and r["lo"] == 0.0 and r["hi"] == 0.0, r
        assert r["verdict"] == "noise"
    # the replicates do differ from each other (the seeds matter), so zero is not trivial
    tti = [json.loads((tmp_path / "same" / "a" / f"rep-{i:03d}" / "kpis.json").read_text())["travel_time_index"]["index"]
           for i in range(3)]
    assert len(set(tti)) > 1
    saved = json.loads((tmp_path / "same" / "compare_replicates.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"])) and "t-interval" in saved["method"]
    assert "noise" in res["table"] and "90 % paired t-interval" in res["table"]


def test_more_rain_is_a_real_difference_on_the_flood_kpis_on_a_local_cluster(tmp_path):
    p = write_scenario(tmp_path)
    a = load_scenario(p, FAST)
    b = load_scenario(p, FAST + ["flood.rain.peak_mm_per_h=400"])
    res = compare_replicates(a, b, 3, tmp_path / "rain", n_workers=2, city=small_city())
    assert res["scheduler"].startswith("LocalCluster")
    rows = {r["kpi"]: r for r in res["rows"]}
    for k in ("water volume at end [Mm³]", "flooded area ≥0.1 m, max [km²]"):
        r = rows[k]
        assert r["verdict"] == "real" and r["lo"] > 0 and r["b_minus_a"] > 0, r
    # the KPI catalog's rows: headline first, and more flooding is judged worse (lower is better)
    dec = {r["id"]: r for r in res["decision_rows"]}
    assert [r["headline"] for r in res["decision_rows"][:10]] == list(range(1, 11))
    assert dec["flooded_area_max_m2"]["direction_verdict"] == "worse" and dec["flooded_area_max_m2"]["unit"] == "km²"
    # B's own seed is not used: B runs with A's replicate seeds
    run = yaml.safe_load((tmp_path / "rain" / "b" / "rep-002" / "scenario.yaml").read_text())
    assert run["seed"] == res["seeds"][2] and run["flood"]["rain"]["peak_mm_per_h"] == 400


def test_run_folders_as_inputs_and_refusals(tmp_path):
    from twin.simulation import run_scenario

    city = small_city()
    sc = load_scenario(write_scenario(tmp_path), FAST)
    run_scenario(sc, out_dir=tmp_path / "base", city=city)
    res = compare_replicates(tmp_path / "base", write_scenario(tmp_path, name="copy.yaml"), 2, tmp_path / "r",
                             serial=True, city=city)
    assert res["seeds"] == replicate_seeds(sc, 2)
    with pytest.raises(ValueError, match="replicates.*>= 2"):
        compare_replicates(sc, sc, 1, tmp_path / "x", serial=True, city=city)
    with pytest.raises(FileNotFoundError, match="without scenario.yaml"):
        compare_replicates(tmp_path / "r", sc, 2, tmp_path / "x", serial=True, city=city)
    other = load_scenario(write_scenario(tmp_path), FAST + ["city=danang"])
    with pytest.raises(ValueError, match="one city"):
        compare_replicates(sc, other, 2, tmp_path / "x", serial=True, city=city)


def _cli(*args, cwd):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(cwd)}
    return subprocess.run([sys.executable, "-m", "twin", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_cli_compare_replicates_json_and_errors(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text(f"extends: {REPO / 'scenarios' / 'danang_rain.yaml'}\nresolution_m: 300\nduration: 20min\n"
                 "outputs: {png: false, fields_every: 10min, kpis_every: 10min, tables_every: 10min}\n")
    b = tmp_path / "b.yaml"
    b.write_text(f"extends: {a}\nflood: {{rain: {{peak_mm_per_h: 400}}}}\n")
    out = _cli("compare", str(a), str(b), "--replicates", "2", "--serial", "--json", "--out", str(tmp_path / "o"),
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    rows = {r["kpi"]: r for r in res["rows"]}
    assert res["replicates"] == 2 and res["scheduler"] == "serial"
    assert rows["water volume at end [Mm³]"]["verdict"] == "real"
    assert (tmp_path / "o" / "b" / "rep-001" / "kpis.json").is_file()
    for args, msg in ((["--replicates", "1"], "--replicates 1"), (["--serial"], "go with --replicates"),
                      (["--replicates", "2", "--serial"], "no such scenario file"),
                      (["--replicates", "2", "--workers", "0"], "--workers 0"),
                      (["--replicates", "2", "--png", "x.png"], "--png goes with")):
        bad = _cli("compare", str(a), str(tmp_path / "nope.yaml") if "no such" in msg else str(b), *args,
                   "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)
    again = _cli("compare", str(a), str(b), "--replicates", "2", "--serial", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
