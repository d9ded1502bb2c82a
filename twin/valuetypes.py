"""Value types shared by the scenario schema and the decisions: durations, local datetimes, paths.

Durations accept seconds (a number) or strings such as ``"6h"``, ``"10min"``, ``"1h30min"``; event
times are durations since the scenario start (absolute datetimes are converted by the scenario);
datetimes are local (Asia/Ho_Chi_Minh, UTC+7).
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo

__all__ = ["LOCAL_TZ", "parse_duration", "Duration", "PositiveDuration", "LocalDatetime", "FilePath",
           "EventTime", "XY", "FrozenModel"]

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")



# --------------------------------------------------------------------------------------------
# value types
# --------------------------------------------------------------------------------------------
_UNITS = {
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "min": 60.0, "m": 60.0, "minute": 60.0, "minutes": 60.0,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
}
_DUR_RE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*")


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``"6h"``, ``"1h30min"``, ``"90 s"``, ``"2.5d"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, _dt.timedelta):
        v = value.total_seconds()
    elif isinstance(value, str):
        s = value.strip()
        if s.startswith("-"):
            raise ValueError(f"duration must be >= 0, got {value!r}")
        pos, total, n = 0, 0.0, 0
        while pos < len(s):
            m = _DUR_RE.match(s, pos)
            if not m or m.end() == pos:
                raise ValueError(f"cannot read duration {value!r} (use e.g. 3600, '6h', '10min', '1h30min')")
            unit = m.group(2).lower() or "s"
            if unit not in _UNITS:
                raise ValueError(f"unknown time unit {m.group(2)!r} in {value!r} (use d, h, min, s)")
            total += float(m.group(1)) * _UNITS[unit]
            pos, n = m.end(), n + 1
        if n == 0:
            raise ValueError(f"cannot read duration {value!r}")
        v = total
    else:
        raise ValueError(f"expected a duration, got {value!r}")
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"duration must be finite and >= 0, got {value!r}")
    return v


def _positive_duration(value: Any) -> float:
    v = parse_duration(value)
    if v <= 0:
        raise ValueError(f"duration must be > 0, got {value!r}")
    return v


def _to_local(value: Any) -> _dt.datetime:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"cannot read datetime {value!r} (use e.g. 2020-10-28T06:00)") from exc
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"expected a datetime, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=LOCAL_TZ)
    return value.astimezone(LOCAL_TZ)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir") if info is not None else None
    p = Path(value).expanduser()
    if not p.is_absolute() and base is not None:
        p = (Path(base) / p).resolve()
    if (info.context or {}).get("check_paths", True) and not p.exists():
        raise ValueError(f"file not found: {p}")
    return p


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
LocalDatetime = Annotated[_dt.datetime, BeforeValidator(_to_local)]
FilePath = Annotated[Path, AfterValidator(_resolve_path)]
# an event time: seconds since start (durations) -- absolute datetimes are converted by Scenario
EventTime = Annotated[float, BeforeValidator(parse_duration)]
XY = tuple[float, float]


class _Model(BaseModel):
    # allow_inf_nan=False: every float of a scenario or decision is finite (a NaN level or an inf
    # rate is refused with its key, never run); ranges per key are on the fields
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


FrozenModel = _Model
