"""``twin review``: review.json and a self-contained review.html for a run with trainee decisions,
the effect of each decision from counterfactual forks, the baseline, and bad input."""
from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from twin.cli import main
from twin.review.model import ReviewReport

from .helpers import OBJECTIVES


def test_review_writes_json_and_html(reviewed, exercise_folder):
    p, out = reviewed
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    rep = ReviewReport.model_validate_json((out / "review.json").read_text(encoding="utf-8"))
    assert rep.is_exercise and rep.forks["scheduler"].startswith("LocalCluster")
    trainee = [d for d in rep.decisions if d.role == "trainee"]
    assert [(d.type, d.issuer, d.source, d.t_s) for d in trainee] == [
        ("evacuation_order", "commander", "api", 600.0), ("road_closure", "police", "dashboard", 2400.0)]
    for d in trainee:       # each has its counterfactual and a delta for every KPI
        assert d.effect is not None and Path(d.effect.counterfactual_dir).is_dir()
        assert d.effect.kpis["evacuated_before_water"].delta is not None
    # each fork restored the checkpoint (every 10 min) at the time its decision acted
    assert trainee[0].effect.from_checkpoint_s == 600.0 and trainee[1].effect.from_checkpoint_s == 2400.0
    assert [d.role for d in rep.decisions if d.source == "exercise"] == ["inject"]
    assert [i.message for i in rep.injects] == ["radio says: river rising"]
    assert [o.kind for o in rep.objectives] == [o["kind"] for o in OBJECTIVES]
    assert all(o.status in ("met", "missed") and o.baseline is not None for o in rep.objectives)
    # the machinery with nothing left out reproduces the run exactly
    assert rep.noop_check.identical is True and "fields.nc" in rep.noop_check.compared
    assert set(rep.curves) == {"run", "baseline"} and "persons_in_water" in rep.curves["run"]


def test_an_early_evacuation_order_helps_and_a_closure_closes_roads(reviewed):
    _, out = reviewed
    rep = ReviewReport.model_validate_json((out / "review.json").read_text(encoding="utf-8"))
    order, closure = [d for d in rep.decisions if d.role == "trainee"]
    ev = order.effect.kpis["evacuated_before_water"]
    assert ev.delta > 0 and ev.helped is True and ev.run == ev.without + ev.delta
    assert order.effect.kpis["people_hours_in_water"].delta < 0
    # closing roads can only add closed link-hours: a delta > 0, and it counts as worse for that KPI
    closed = closure.effect.kpis["road_link_hours_closed"]
    assert closed.delta > 0 and closed.helped is False
    # the order moved far more people out before the water than a closure at 40 min did
    assert abs(closure.effect.kpis["evacuated_before_water"].delta) < ev.delta


def test_baseline_keeps_scenario_and_inject_decisions_only(reviewed, exercise_folder):
    _, out = reviewed
    rep = ReviewReport.model_validate_json((out / "review.json").read_text(encoding="utf-8"))
    assert rep.baseline.origin == "computed"
    log = pd.read_parquet(Path(rep.baseline.run_dir) / "decisions.parquet")
    assert list(log["type"]) == ["warning"] and list(log["t_s"]) == [1200.0]
    # without the order, fewer people left before the water; the objective scored on both
    assert rep.kpis["evacuated_before_water"].delta > 0
    city = next(o for o in rep.objectives if o.kind == "evacuated_before_water_min")
    assert city.baseline["measured"] < city.measured


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href", "data", "poster"):
            if a.get(key) and tag in ("script", "link", "img", "iframe", "source", "embed", "object", "video"):
                self.refs.append(f"{tag} {key}={a[key]}")
        self._in_style = tag == "style"
        if a.get("style"):
            self.styles.append(a["style"])

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._in_style = False


def test_html_is_self_contained(reviewed):
    _, out = reviewed
    text = (out / "review.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert parser.scripts >= 2                          # plotly.js inlined, and the figure
    assert "Plotly.newPlot" in text and "evacuation_order" in text
    assert not [r for r in parser.refs if re.search(r"=\s*(https?:)?//", r)], parser.refs
    assert not [s for s in parser.styles if re.search(r"url\(\s*['\"]?(https?:)?//|@import", s)]


def _copy_run(src: Path, dst: Path, **scenario_changes) -> Path:
    dst.mkdir(parents=True)
    for f in ("scenario.yaml", "manifest.json", "decisions.parquet", "kpis.json"):
        shutil.copy(src / f, dst / f)
    if scenario_changes:
        m = json.loads((dst / "manifest.json").read_text())
        m["scenario"].update(scenario_changes)
        (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _error(capsys, argv, *names):
    rc = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")][-1]
    for n in names:
        assert n in line, line
    return line


def test_bad_input_is_exit_2_with_a_clear_message(exercise_folder, tmp_path, capsys):
    _error(capsys, ["review", tmp_path, "--out", tmp_path / "r1"], "not a run folder", str(tmp_path))
    _error(capsys, ["review", tmp_path / "nope", "--out", tmp_path / "r1"], "does not exist")
    other = _copy_run(exercise_folder, tmp_path / "other-grid", resolution_m=100)
    _error(capsys, ["review", exercise_folder, "--baseline", other, "--out", tmp_path / "r2"],
           "resolution_m", "100", "300")
    city = _copy_run(exercise_folder, tmp_path / "other-city", city="danang")
    _error(capsys, ["review", exercise_folder, "--baseline", city, "--out", tmp_path / "r3"], "city", "danang")
    unfinished = _copy_run(exercise_folder, tmp_path / "unfinished")
    m = json.loads((unfinished / "manifest.json").read_text())
    m["status"] = "checkpointed"
    (unfinished / "manifest.json").write_text(json.dumps(m))
    _error(capsys, ["review", unfinished, "--out", tmp_path / "r4"], "not finished", "checkpointed")
    # a bad objective in exercise.yaml names the entry and the field, before any fork runs
    bad = _copy_run(exercise_folder, tmp_path / "bad-objective")
    (bad / "exercise.yaml").write_text("objectives:\n  - {kind: rescue_wait_max, minutes: -5}\n")
    _error(capsys, ["review", bad, "--out", tmp_path / "r5"], "objectives[0].minutes", "-5")
    assert not (tmp_path / "r5").exists()


def test_a_run_without_trainee_decisions_is_its_own_baseline(exercise_folder, tmp_path):
    from twin.review import review_run

    run = tmp_path / "run"
    shutil.copytree(exercise_folder, run)
    log = pd.read_parquet(run / "decisions.parquet")
    log[~log["source"].isin(["api", "dashboard"])].to_parquet(run / "decisions.parquet")
    rep = review_run(run, tmp_path / "rev", html=False)
    assert rep.baseline.origin == "the run itself" and rep.noop_check.identical is None
    assert all(k.delta in (0.0, None) for k in rep.kpis.values())
    assert rep.forks["n_forks"] == 0 and (tmp_path / "rev" / "review.json").is_file()


@pytest.mark.parametrize("bad", [0.0, float("nan")])
def test_water_depth_must_be_positive(exercise_folder, tmp_path, bad):
    from twin.review import ReviewError, review_run

    with pytest.raises(ReviewError, match="water-depth"):
        review_run(exercise_folder, tmp_path / "rev", water_depth_m=bad)


def test_a_noop_fork_that_differs_is_reported_not_hidden(reviewed, tmp_path, monkeypatch, capsys):
    """If the fork machinery did not reproduce the run, the page says so and the command exits 1."""
    from twin.review.html import write_html

    _, out = reviewed
    rep = ReviewReport.model_validate_json((out / "review.json").read_text(encoding="utf-8"))
    bad = rep.model_copy(update={
        "noop_check": rep.noop_check.model_copy(update={"identical": False, "differences": ["kpis.json: volume_m3"]}),
        "warnings": ["no-op counterfactual differs from the run: kpis.json: volume_m3"]})
    write_html(bad, tmp_path / "review.html")
    page = (tmp_path / "review.html").read_text(encoding="utf-8")
    assert "class='warn'" in page and "differs from the run" in page and "kpis.json: volume_m3" in page
    monkeypatch.setattr("twin.review.report.review_run", lambda *a, **k: bad)
    rc = main(["review", str(out), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and "kpis.json: volume_m3" in err and "not trustworthy" in err
