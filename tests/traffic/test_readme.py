"""The traffic guide's quick-start example runs as written and gives the numbers it claims.

(It lived in the README until the README became a short front page; the example is now the first
python block of docs/user-guide/traffic.md, after the ``example: traffic-quickstart`` marker.)
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "user-guide" / "traffic.md"


def test_traffic_guide_example_runs():
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("<!-- example: traffic-quickstart", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "docs/user-guide/traffic.md[traffic-quickstart]", "exec"), ns)
    tm = ns["tm"]
    assert tm.time == 60.0
    assert list(tm.trip_status(ns["ids"]).state) == ["arrived", "arrived"]
    w = 120.0  # mm on link 0
    v0 = (0.0009 * w * w - 0.5529 * w + 86.9448) / 3.6
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx(300.0 / v0 + 300.0 / (50 / 3.6), abs=1e-9)
