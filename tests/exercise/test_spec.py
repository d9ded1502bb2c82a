"""Exercise files: what a bad one says (file, key, value), and ``twin exercise`` refusing it with exit code 2."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from twin.exercise.spec import ExerciseError, load_exercise

from .helpers import LIGHT, REPO, SHORT, twin_env


def _write(tmp_path, body: str):
    p = tmp_path / "ex.yaml"
    p.write_text(f"extends: {REPO / 'scenarios' / 'tamky_molave_2020.yaml'}\n" + textwrap.dedent(body))
    return p


ROLES = "roles:\n  commander: {kinds: [warning]}\n"


@pytest.mark.parametrize("body, words", [
    ("", ["roles: expected a mapping"]),
    ("roles:\n  commander: {kinds: [warp_drive]}\n", ["roles.commander.kinds", "unknown decision kind", "warp_drive"]),
    ("roles:\n  commander: {kinds: [warning], colour: red}\n", ["roles.commander.colour", "unknown key"]),
    ("roles:\n  Commander: {kinds: [warning]}\n", ["seat name 'Commander'"]),
    ("roles:\n  control: {kinds: [warning]}\n", ["'control' is the exercise controller's seat"]),
    (ROLES + "injects:\n  - {at: 30min}\n", ["injects.0.message", "required"]),
    (ROLES + "injects:\n  - {at: soon, message: hi}\n", ["injects.0.at", "soon"]),
    (ROLES + "injects:\n  - {at: 30h, message: hi}\n", ["injects.0.at: after the end"]),
    (ROLES + "injects:\n  - {at: 1h, message: hi, decision: {type: road_closure, near: [1, 2], radius_m: -5}}\n",
     ["injects.0.decision", "road_closure.radius_m", "greater than 0"]),
    (ROLES + "injects:\n  - {at: 1h, message: hi, decision: {type: warning, at: 2h}}\n",
     ["injects.0.decision", "acts when the inject fires"]),
    (ROLES + "objectives: [{kind: world_peace}]\n", ["objectives", "world_peace"]),
    (ROLES + "objectives: {kind: no_hospital_closed}\n", ["objectives: expected a list"]),
])
def test_a_bad_exercise_names_the_key_and_value(tmp_path, body, words):
    with pytest.raises(ExerciseError) as ei:
        load_exercise(_write(tmp_path, body))
    msg = str(ei.value)
    assert str(tmp_path / "ex.yaml") in msg
    for w in words:
        assert w in msg, (w, msg)


def test_the_shipped_exercises_load_and_round_trip(tmp_path):
    for path in sorted((REPO / "scenarios" / "exercises").glob("*.yaml")):
        ex = load_exercise(path)
        assert ex.roles and ex.injects and ex.objectives, path
        assert set(ex.seats) == {"control", *ex.roles}
        again = tmp_path / f"{path.stem}.yaml"
        again.write_text(ex.to_yaml())          # exercise.yaml in a run folder: loads to the same exercise
        ex2 = load_exercise(again)
        assert ex2.as_run() == ex.as_run()
        assert "extends" not in yaml.safe_load(again.read_text())
    ex = load_exercise(SHORT, ["roles.dispatch.control=true", "duration=2h"])
    assert ex.roles["dispatch"].control and ex.scenario.duration == 7200


def test_twin_exercise_refuses_bad_input_with_exit_code_2(tmp_path, capsys):
    from twin.cli import main

    bad = _write(tmp_path, "roles:\n  commander: {kinds: [warp_drive]}\n")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    cases = [
        ([str(SHORT), "--speed", "0"], "--speed must be > 0"),
        ([str(SHORT), "--port", "70000"], "--port must be in 1..65535"),
        ([str(SHORT), "--host", "bad host!"], "--host and --allow-host"),
        ([str(SHORT), "--set", "duration=-1h"], "duration"),
        ([str(tmp_path / "missing.yaml")], "not found"),
        ([str(SHORT), "--out", str(occupied)], "not empty"),
    ]
    for argv, words in cases:
        assert main(["exercise", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and "Traceback" not in err, (argv, err)
    # and from a real process
    r = subprocess.run([sys.executable, "-m", "twin", "exercise", str(bad)], env=twin_env(), cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "unknown decision kind" in r.stderr, r.stderr
    assert not list(tmp_path.glob("runs/*"))      # nothing written for a refused exercise


def test_an_inject_that_does_not_fit_the_city_stops_the_exercise_with_exit_code_2(tmp_path):
    """Checked against the built twin (the schema cannot know the city's places): one error line."""
    from .helpers import free_port

    ex = tmp_path / "ex.yaml"
    ex.write_text(SHORT.read_text().replace("extends: ../tamky_molave_2020.yaml",
                                            f"extends: {REPO / 'scenarios' / 'tamky_molave_2020.yaml'}")
                  .replace("place: Bệnh viện Y học cổ truyền Quảng Nam", "place: Bệnh viện Không Có"))
    r = subprocess.run([sys.executable, "-m", "twin", "exercise", str(ex), "--port", str(free_port()),
                        "--out", str(tmp_path / "run"), *LIGHT], env=twin_env(), cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "injects.2.decision" in err[0] and "Bệnh viện Không Có" in err[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
