"""The one event-log class shared by people (events) and services (unit actions)."""
from __future__ import annotations

import numpy as np
import pytest

from twin.agents import EventLog


def test_append_rows_arrays_and_frame_types():
    log = EventLog(["t_s", "agent_id", "event", "detail"], kind="event",
                   dtypes={"t_s": "float64", "agent_id": "int64", "event": "object", "detail": "object"})
    assert log.to_frame().dtypes["agent_id"] == np.int64 and len(log) == 0  # typed even when empty
    log.append(10, "trapped", agent_id=3, detail="at home")
    log.append(20.5, "leave", agent_id=np.array([1, 2]), detail=np.array(["shelter", "relatives"], dtype=object))
    log.append(30, "arrived", agent_id=np.array([7, 8]), detail="safe")          # scalar repeated
    log.append(40, "stalled", agent_id=np.zeros(0, np.int64))                    # no rows
    df = log.to_frame()
    assert df["t_s"].tolist() == [10.0, 20.5, 20.5, 30.0, 30.0]
    assert df["agent_id"].tolist() == [3, 1, 2, 7, 8]
    assert df["event"].tolist() == ["trapped", "leave", "leave", "arrived", "arrived"]
    assert df["detail"].tolist() == ["at home", "shelter", "relatives", "safe", "safe"]
    other = EventLog(log.columns, kind="event", dtypes=log.dtypes)
    other.set_state(log.get_state())
    assert other.to_frame().equals(df)


def test_defaults_and_bad_input():
    log = EventLog(["t_s", "unit_id", "action", "x", "detail"], kind="action", defaults={"unit_id": -1})
    log.append(5, "call", x=1.5)
    assert log.to_frame().iloc[0].to_dict() == {"t_s": 5.0, "unit_id": -1, "action": "call", "x": 1.5, "detail": ""}
    with pytest.raises(ValueError, match="unknown field"):
        log.append(6, "call", speed=3)
    with pytest.raises(ValueError, match="different lengths"):
        log.append(6, "call", unit_id=[1, 2], x=[1.0])
    with pytest.raises(ValueError, match="missing column"):
        log.set_state({"t_s": []})
    with pytest.raises(ValueError, match="kind column"):
        EventLog(["t_s", "x"], kind="event")
