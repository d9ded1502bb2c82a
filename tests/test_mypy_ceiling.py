"""tools/mypy_ceiling.py: the stored mypy error count only goes down, and a failed mypy run is not zero."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("mypy_ceiling", Path(__file__).parents[1] / "tools" / "mypy_ceiling.py")
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def test_counts_from_the_summary_line():
    assert mc.count_errors("a.py:1: error: x  [misc]\nFound 12 errors in 3 files (checked 59 source files)\n", 1) == 12
    assert mc.count_errors("Found 1 error in 1 file (checked 1 source file)\n", 1) == 1
    assert mc.count_errors("Success: no issues found in 59 source files\n", 0) == 0


@pytest.mark.parametrize("output,rc", [("", 2), ("No module named mypy\n", 1),
                                       ("mypy: error: unrecognized arguments\n", 2),
                                       ("Found 3 errors in 1 file (checked 2 source files)\n", 2)])
def test_a_failed_run_is_never_counted(output, rc):
    with pytest.raises(RuntimeError, match="did not finish normally"):
        mc.count_errors(output, rc)


@pytest.fixture
def ceiling(tmp_path, monkeypatch):
    path = tmp_path / "mypy_ceiling.txt"
    mc.write_ceiling(100, path)
    monkeypatch.setattr(mc, "CEILING_FILE", path)
    monkeypatch.setattr(mc, "REPO", tmp_path)
    return path


def _run(monkeypatch, count, *args):
    monkeypatch.setattr(mc, "run_mypy", lambda python_executable=None: (count, f"Found {count} errors\n"))
    return mc.main(list(args))


def test_above_the_ceiling_fails_and_update_does_not_raise_it(ceiling, monkeypatch):
    assert _run(monkeypatch, 101) == 1
    assert _run(monkeypatch, 101, "--update") == 1
    assert mc.read_ceiling(ceiling) == 100


def test_update_lowers_and_plain_run_does_not(ceiling, monkeypatch):
    assert _run(monkeypatch, 90) == 0
    assert mc.read_ceiling(ceiling) == 100
    assert _run(monkeypatch, 90, "--update") == 0
    assert mc.read_ceiling(ceiling) == 90


def test_reset_records_the_merged_count(ceiling, monkeypatch):
    assert _run(monkeypatch, 130, "--reset") == 0
    assert mc.read_ceiling(ceiling) == 130


def test_mypy_crash_exits_2(ceiling, monkeypatch):
    def crash(python_executable=None):
        raise RuntimeError("mypy did not finish normally (exit 2)")
    monkeypatch.setattr(mc, "run_mypy", crash)
    assert mc.main([]) == 2
    assert mc.read_ceiling(ceiling) == 100
