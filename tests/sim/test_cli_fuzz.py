"""Fuzzing the CLI (issue 14 item 11): random scenario keys (drawn from the scenario schema) with
random YAML scalars, and random command-line arguments. The CLI exits 0 or 2, with one ``error:``
line on 2, and never a traceback (an exception escaping ``twin.cli.main`` fails the example).

Bounded: derandomized (the same examples every run), a few dozen examples each, a deadline per
example; runs are two coupling steps of Đà Nẵng at 300 m, and the widest values go through
``twin run --check`` (validation and memory estimate only, nothing built).
"""
from __future__ import annotations

import itertools
import types
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from twin.cli import main
from twin.scenario import Scenario

REPO = Path(__file__).resolve().parents[2]
DANANG = REPO / "scenarios" / "danang_rain.yaml"
MOLAVE = REPO / "scenarios" / "tamky_molave_2020.yaml"
FIXED = ["--set", "resolution_m=300", "--set", "coupling_step=5min", "--set", "duration=10min"]
_SETTINGS = dict(derandomize=True, database=None, deadline=None, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.data_too_large])


def _models_in(ann) -> list[tuple[str, type]]:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [("", ann)]
    origin, out = typing.get_origin(ann), []
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for a in typing.get_args(ann):
            out += _models_in(a)
    elif origin in (list, tuple):
        out += [(".0" + p, m) for a in typing.get_args(ann)[:1] for p, m in _models_in(a)]
    return out


def schema_keys(model=Scenario, prefix: str = "", depth: int = 0) -> list[str]:
    """Every key path of the scenario schema (list items as ``.0``), e.g. ``flood.rain.peak_mm_per_h``."""
    out = []
    for name, f in model.model_fields.items():
        out.append(prefix + name)
        if depth < 4:
            for p, m in _models_in(f.annotation):
                out += schema_keys(m, f"{prefix}{name}{p}.", depth + 1)
    return sorted(set(out))


KEYS = schema_keys()
# YAML scalars a user might type (or mistype)
TRICKY = ["", "~", "null", ".nan", ".inf", "-.inf", "0", "-1", "1e308", "-1e308", "1e-300", "true", "no", "[]", "{}",
          "[1, 2]", "{a: 1}", "6h", "10min", "-5min", "1h30min", "2020-10-28T05:00", "2020-13-45", "EPSG:4326",
          "float32", "inertial", "fv", "magic", "'quoted'", "[[0, 0], [1, 1]]", "[.nan, 1]", "x" * 300, "\u00e9t\u00e9",
          "0x10", "1_000", "&a 1", "*a", "!!python/object:os.system ls", "'", "[", "{", ": :", "- a\n- b"]


def yaml_scalars(max_abs: float | None = None):
    nums = st.floats(allow_nan=True, allow_infinity=True) if max_abs is None else \
        st.floats(-max_abs, max_abs, allow_nan=False)
    ints = st.integers() if max_abs is None else st.integers(-int(max_abs), int(max_abs))
    return st.one_of(st.sampled_from(TRICKY if max_abs is None else [t for t in TRICKY if "e3" not in t]),
                     nums.map(repr), ints.map(str), st.booleans().map(str),
                     st.text(max_size=30).filter(lambda s: "\x00" not in s))


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: usage + "error:" line, exit 2
        rc = exc.code
    _, err = capsys.readouterr()
    return rc, err


def assert_clean(rc, err, argv):
    assert "Traceback" not in err, (argv, err)
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        # ours: one "error: ..." line; argparse's: a usage line and "twin ...: error: ..."
        assert lines and "error: " in lines[-1], (argv, err)
        assert sum("error: " in ln for ln in lines) == 1, (argv, err)


@settings(max_examples=80, **_SETTINGS)
@given(key=st.sampled_from(KEYS), value=yaml_scalars(), scenario=st.sampled_from([DANANG, MOLAVE]))
def test_fuzz_scenario_keys_validation_only(key, value, scenario, capsys):
    """Any schema key with any YAML scalar: ``twin run --check`` validates it (and the memory
    estimate) and answers valid (0) or one error line (2)."""
    argv = ["run", scenario, "--check", "--set", f"{key}={value}"]
    rc, err = run_cli(argv, capsys)
    assert_clean(rc, err, argv)


_counter = itertools.count()


@pytest.mark.timeout(900)
@settings(max_examples=40, **_SETTINGS)
@given(key=st.sampled_from([k for k in KEYS if k not in ("resolution_m", "coupling_step", "duration", "city",
                                                           "sensors.store", "flood.threads")]),
       value=yaml_scalars(max_abs=1e4))
def test_fuzz_scenario_keys_running(key, value, capsys, tmp_path):
    """Any other key with a moderate YAML scalar, run for two coupling steps at 300 m (with a levee
    intervention whose fields the fuzz can hit): the run ends (0) or is refused (2) in one line."""
    out = tmp_path / f"r{next(_counter)}"
    argv = ["run", DANANG, "--no-progress", "--quiet", "--out", out,
            "--set", "interventions=[{type: levee, at: 5min, polyline: [[195000, 1770000], [205000, 1770000]], crest_m: 5}]",
            "--set", f"{key}={value}", *FIXED]
    rc, err = run_cli(argv, capsys)
    assert_clean(rc, err, argv)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzbase") / "base"
    assert main(["run", str(DANANG), "--no-progress", "--quiet", "--out", str(d),
                 "--set", "outputs.checkpoint_every=5min", *FIXED]) == 0
    return d


def _arg_text():
    return st.one_of(st.sampled_from(TRICKY + ["5min", "300", "0", "10min", "1e9", "-3", "a,b", "0.1,,0.5", "1..2",
                                               "flood.rain.peak_mm_per_h=60..120", "x=1..2", "resolution_m=1..2000"]),
                     st.text(max_size=20).filter(lambda s: "\x00" not in s))


def _small_int_text(s: str) -> str:
    """Keep --members and --workers small (a valid large value would run that many members)."""
    try:
        return s if int(s) <= 2 else "2"
    except ValueError:
        return s


@pytest.mark.timeout(900)
@settings(max_examples=40, **_SETTINGS)
@given(data=st.data())
def test_fuzz_cli_arguments(data, base_run, capsys, tmp_path):
    """Random values for the options of run, fork, compare and ensemble (and random extra tokens)."""
    out = tmp_path / f"o{next(_counter)}"
    cmd = data.draw(st.sampled_from(["run", "fork", "compare", "ensemble", "replay"]))
    t = data.draw(_arg_text())
    if cmd == "run":
        opt = data.draw(st.sampled_from(["--until", "--set", "--resume", "scenario"]))
        argv = {"--until": ["run", DANANG, "--until", t, *FIXED],
                "--set": ["run", DANANG, "--set", t, *FIXED],
                "--resume": ["run", "--resume", base_run.parent / t if t else base_run.parent],
                "scenario": ["run", base_run.parent / t if t else base_run.parent, *FIXED]}[opt]
        argv += ["--no-progress", "--quiet", "--out", out] if opt != "--resume" else ["--no-progress"]
    elif cmd == "fork":
        opt = data.draw(st.sampled_from(["--at", "--set"]))
        argv = ["fork", base_run, "--at", t if opt == "--at" else "5min", "--no-progress", "--out", out]
        if opt == "--set":
            argv += ["--set", t]
    elif cmd == "compare":
        argv = ["compare", base_run, base_run.parent / t if t else base_run, "--png", out / "c.png"]
    elif cmd == "replay":
        argv = ["replay", base_run.parent / t if t else base_run, "--no-progress", "--quiet", "--out", out]
    else:
        opt = data.draw(st.sampled_from(["--members", "--thresholds", "--vary", "--workers", "--set"]))
        members = _small_int_text(t) if opt == "--members" else "1"
        argv = ["ensemble", DANANG, "--serial", "--members", members, "--out", out]
        if opt in ("--thresholds", "--vary", "--set"):
            argv += [opt, t]
        elif opt == "--workers":
            argv += ["--workers", _small_int_text(t)]
        argv += FIXED  # after any fuzzed --set: the grid and the duration stay small
    extra = data.draw(st.lists(st.sampled_from(["--bogus", "--json", "--force", "--allow-large", "-x", "--"]),
                               max_size=1))
    argv += extra
    rc, err = run_cli(argv, capsys)
    assert_clean(rc, err, argv)
