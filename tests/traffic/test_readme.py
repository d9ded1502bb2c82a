"""The README traffic example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_traffic_example_runs():
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- section: traffic -->", 1)[1].split("<!-- section:", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md[traffic]", "exec"), ns)
    tm = ns["tm"]
    assert tm.time == 60.0
    assert list(tm.trip_status(ns["ids"]).state) == ["arrived", "arrived"]
    w = 120.0  # mm on link 0
    v0 = (0.0009 * w * w - 0.5529 * w + 86.9448) / 3.6
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx(300.0 / v0 + 300.0 / (50 / 3.6), abs=1e-9)
