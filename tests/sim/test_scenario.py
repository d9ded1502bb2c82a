"""Scenario validation: a table of bad files and the message each must give; overrides; paths."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from twin.scenario import ScenarioError, load_scenario, parse_duration

GOOD = """
name: t1
city: danang
start: 2020-10-28T06:00
duration: 2h
coupling_step: 60
flood:
  rain: {kind: design_storm, peak_mm_per_h: 100, duration: 1h}
interventions:
  - {type: levee, polyline: [[0, 0], [100, 100]], crest_m: 5, at: 2020-10-28T07:00}
  - {type: warning, at: 30min, channel: cell_broadcast}
"""


def write(tmp_path: Path, text: str, name="s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_loads_with_seconds_and_local_time(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.duration == 7200.0 and sc.coupling_step == 60.0 and sc.n_steps == 120
    assert sc.start.utcoffset().total_seconds() == 7 * 3600
    assert sc.start_utc.hour == 23  # 06:00 local = 23:00 UTC the day before
    assert sc.interventions[0].at == 3600.0  # absolute datetime -> seconds since start
    assert sc.interventions[1].at == 1800.0
    assert sc.flood.rain.duration == 3600.0
    # frozen
    with pytest.raises(pydantic.ValidationError):
        sc.seed = 3


BAD = [
    # (what to change, expected fragments of the message)
    ("flood:\n  rain: {kind: design_storm, peak_mm_per_h: -3}\n", ["flood.rain", "peak_mm_per_h", "-3", "greater than 0"]),
    ("flood:\n  bogus_key: 1\n", ["flood.bogus_key", "unknown key"]),
    ("duration: 7 parsecs\n", ["duration", "7 parsecs", "unknown time unit"]),
    ("duration: 90s\ncoupling_step: 60\n", ["whole number of coupling steps"]),
    ("start: yesterday\n", ["start", "yesterday"]),
    ("flood:\n  solver: magic\n", ["flood.solver", "magic"]),
    ("flood:\n  rain: {kind: file, file: nothere.csv}\n", ["flood.rain", "file", "file not found", "nothere.csv"]),
    ("interventions:\n  - {type: teleport, at: 0}\n", ["interventions.0", "teleport"]),
    ("interventions:\n  - {type: levee, polyline: [[0, 0]], crest_m: 5}\n", ["interventions.0", "polyline", "at least 2"]),
    ("interventions:\n  - {type: pump, capacity_m3_per_s: 2}\n", ["interventions.0", "exactly one of 'place' or 'xy'"]),
    ("interventions:\n  - {type: warning, at: -5h}\n", ["interventions.0", "at", "-5h", ">= 0"]),
    ("interventions:\n  - {type: breach, xy: [1, 2], crest_start_m: 3, crest_end_m: 5}\n", ["crest_end_m", "must not exceed"]),
    ("seed: -1\n", ["seed", "-1"]),
    ("outputs:\n  fields: [depth, vorticity]\n", ["outputs.fields.1", "vorticity"]),
]


@pytest.mark.parametrize("patch,fragments", BAD, ids=[b[1][0] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_files_name_file_key_and_value(tmp_path, patch, fragments):
    import yaml

    data = yaml.safe_load(GOOD)
    data.update(yaml.safe_load(patch))
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    msg = str(ei.value)
    assert str(p) in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} missing from: {msg}"


def test_not_yaml_and_missing_and_non_mapping(tmp_path):
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ScenarioError, match="required key is missing"):
        load_scenario(write(tmp_path, "name: x\ncity: danang\nstart: 2020-01-01\n"))


def test_safe_load_only(tmp_path):
    p = write(tmp_path, GOOD + "description: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(p)


def test_overrides_apply_before_validation_and_are_validated(tmp_path):
    p = write(tmp_path, GOOD)
    sc = load_scenario(p, ["flood.rain.peak_mm_per_h=80", "seed=9", "interventions.1.at=1h", "traffic.enabled=false"])
    assert sc.flood.rain.peak_mm_per_h == 80 and sc.seed == 9
    assert sc.interventions[1].at == 3600 and sc.traffic is not None and not sc.traffic.enabled
    with pytest.raises(ScenarioError, match=r"flood.rain.design_storm.peak_mm_per_h.*value -1"):
        load_scenario(p, ["flood.rain.peak_mm_per_h=-1"])
    with pytest.raises(ScenarioError, match="unknown key"):
        load_scenario(p, ["flood.nonsense=1"])
    with pytest.raises(ScenarioError, match="no list item"):
        load_scenario(p, ["interventions.7.at=1h"])
    with pytest.raises(ScenarioError, match="key.path=value"):
        load_scenario(p, ["seed"])
    # the resolved scenario round-trips through its YAML (the run folder's scenario.yaml)
    again = tmp_path / "again.yaml"
    again.write_text(sc.to_yaml())
    assert load_scenario(again) == sc


def test_paths_are_relative_to_the_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "rain.csv").write_text("t_s,rain_mm_per_h\n0,10\n3600,0\n")
    p = write(sub, GOOD.replace("{kind: design_storm, peak_mm_per_h: 100, duration: 1h}", "{kind: file, file: rain.csv}"))
    sc = load_scenario(p)
    assert sc.flood.rain.file == (sub / "rain.csv").resolve()
    assert sc.input_files() == [(sub / "rain.csv").resolve()]


@pytest.mark.parametrize("text,seconds", [(3600, 3600.0), ("6h", 21600.0), ("10min", 600.0), ("1h30min", 5400.0),
                                          ("90 s", 90.0), ("2d", 172800.0), ("0.5h", 1800.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_every_shipped_scenario_validates():
    root = Path(__file__).resolve().parents[2] / "scenarios"
    files = sorted(root.glob("*.yaml"))
    assert files, "no scenarios shipped"
    for f in files:
        load_scenario(f)


def test_extends_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "rain.csv").write_text("t_s,rain_mm_per_h\n0,10\n3600,0\n")
    write(tmp_path, GOOD.replace("{kind: design_storm, peak_mm_per_h: 100, duration: 1h}",
                                        "{kind: file, file: rain.csv}"), "base.yaml")
    sub = tmp_path / "whatif"
    sub.mkdir()
    child = sub / "child.yaml"
    child.write_text("extends: ../base.yaml\nname: child\nflood: {loss_rate_mm_per_h: 7}\n"
                     "interventions: [{type: warning, at: 10min}]\n")
    sc = load_scenario(child)
    assert sc.name == "child" and sc.flood.loss_rate_mm_per_h == 7
    assert sc.flood.rain.file == (tmp_path / "rain.csv").resolve()  # relative to the base file
    assert [iv.type for iv in sc.interventions] == ["warning"] and sc.duration == 7200
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(loop)
