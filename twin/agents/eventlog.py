"""One event-log class for the agent models (people's events, the services' unit actions).

Columnar: one plain list per column, so a run that logs hundreds of thousands of events keeps no
per-event tuple or dict for the cyclic garbage collector to scan.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["EventLog"]


class EventLog:
    """Append-only table of events with fixed columns.

    ``EventLog(columns, kind="event", dtypes=None, defaults=None)``: ``columns`` include ``"t_s"``
    and the ``kind`` column (the event's name). :meth:`append` adds one row, or several at once when
    a field is a sequence or array (scalars are repeated; every sequence must have the same length).
    A column not given takes its default (``defaults``, else ``""``). :meth:`to_frame` returns the
    table with ``dtypes`` applied (so an empty log has the right column types too).
    """

    def __init__(self, columns: Sequence[str], kind: str = "event", dtypes: Mapping[str, str] | None = None,
                 defaults: Mapping[str, object] | None = None):
        self.columns = list(columns)
        if "t_s" not in self.columns or kind not in self.columns:
            raise ValueError(f"EventLog: columns {self.columns} must include 't_s' and the kind column {kind!r}")
        self.kind = kind
        self.dtypes = dict(dtypes or {})
        self.defaults = dict(defaults or {})
        self.data: dict[str, list] = {c: [] for c in self.columns}

    def append(self, t_s: float, kind: str, **fields) -> None:
        """One event ``kind`` at model time ``t_s`` (rows for every element of array-valued fields)."""
        unknown = set(fields) - set(self.columns)
        if unknown:
            raise ValueError(f"EventLog.append: unknown field(s) {sorted(unknown)} (columns: {self.columns})")
        n = None
        for v in fields.values():
            if isinstance(v, (np.ndarray, list, tuple)):
                m = len(v)
                if n is not None and m != n:
                    raise ValueError(f"EventLog.append: array fields of different lengths ({n} and {m})")
                n = m
        fields[self.kind] = kind
        fields["t_s"] = float(t_s)
        if n is None:
            for c in self.columns:
                self.data[c].append(fields.get(c, self.defaults.get(c, "")))
            return
        if n == 0:
            return
        for c in self.columns:
            v = fields.get(c, self.defaults.get(c, ""))
            if isinstance(v, np.ndarray):
                self.data[c].extend(v.tolist())
            elif isinstance(v, (list, tuple)):
                self.data[c].extend(v)
            else:
                self.data[c].extend([v] * n)

    def __len__(self) -> int:
        return len(self.data["t_s"])

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame({c: self.data[c] for c in self.columns}, columns=self.columns)
        return df.astype(self.dtypes) if self.dtypes else df

    def get_state(self) -> dict:
        return {c: list(v) for c, v in self.data.items()}

    def set_state(self, s: Mapping[str, Sequence]) -> None:
        missing = [c for c in self.columns if c not in s]
        if missing:
            raise ValueError(f"EventLog.set_state: missing column(s) {missing}")
        self.data = {c: list(s[c]) for c in self.columns}
