"""Schedules: callables ``schedule(sim) -> bool`` deciding when a recorder or callback fires.

After Oceananigans ``src/Utils/schedules.jl``. The simulation clock is an integer iteration count
(``sim.iteration``) with ``sim.time == iteration * sim.dt``; time-based schedules compare integer
step counts whenever their interval is a whole number of coupling steps (checked by
:meth:`Schedule.check` when the twin is built), so no floating-point drift can skip or double an output.

A schedule is evaluated after the step that brought the clock to ``sim.time`` (and once at
iteration 0 when the simulation starts, for outputs of the initial state).
"""
from __future__ import annotations

import math
import time as _time
from collections.abc import Iterable

__all__ = [
    "Schedule",
    "TimeInterval",
    "IterationInterval",
    "WallTimeInterval",
    "SpecifiedTimes",
    "AndSchedule",
    "OrSchedule",
    "Always",
]


class Schedule:
    """Base class: subclasses implement ``__call__(sim) -> bool``."""

    def check(self, dt: float) -> None:
        """Raise ``ValueError`` if this schedule cannot be honoured with coupling step ``dt``."""

    def __call__(self, sim) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __and__(self, other: Schedule) -> AndSchedule:
        return AndSchedule(self, other)

    def __or__(self, other: Schedule) -> OrSchedule:
        return OrSchedule(self, other)

    # state for checkpoints (most schedules are stateless functions of the clock)
    def get_state(self) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass


class Always(Schedule):
    def __call__(self, sim) -> bool:
        return True

    def __repr__(self) -> str:
        return "Always()"


class IterationInterval(Schedule):
    """Fires when ``iteration % interval == offset``."""

    def __init__(self, interval: int, offset: int = 0):
        if int(interval) != interval or interval < 1:
            raise ValueError(f"IterationInterval: interval must be a positive integer, got {interval!r}")
        self.interval, self.offset = int(interval), int(offset)

    def __call__(self, sim) -> bool:
        return sim.iteration % self.interval == self.offset % self.interval

    def __repr__(self) -> str:
        return f"IterationInterval({self.interval})"


class TimeInterval(Schedule):
    """Fires every ``interval`` simulated seconds (at t = 0, interval, 2·interval, ...).

    ``interval`` must be a whole multiple of the coupling step; then the schedule is exact in
    integer iterations.
    """

    def __init__(self, interval_s: float):
        interval_s = float(interval_s)
        if not math.isfinite(interval_s) or interval_s <= 0:
            raise ValueError(f"TimeInterval: interval must be > 0 s, got {interval_s!r}")
        self.interval = interval_s

    def steps(self, dt: float) -> int:
        n = self.interval / dt
        k = int(round(n))
        if k < 1 or abs(n - k) > 1e-9 * max(1.0, n):
            raise ValueError(
                f"output interval {self.interval:g} s is not a whole multiple of the coupling step {dt:g} s"
            )
        return k

    def check(self, dt: float) -> None:
        self.steps(dt)

    def __call__(self, sim) -> bool:
        return sim.iteration % self.steps(sim.dt) == 0

    def __repr__(self) -> str:
        return f"TimeInterval({self.interval:g} s)"


class SpecifiedTimes(Schedule):
    """Fires at the first step whose time reaches each given time (seconds since start).

    Each time must fall on a coupling step (checked); a time is fired once.
    """

    def __init__(self, times_s: Iterable[float]):
        self.times = sorted(float(t) for t in times_s)
        if any(t < 0 or not math.isfinite(t) for t in self.times):
            raise ValueError(f"SpecifiedTimes: times must be finite and >= 0, got {self.times}")

    def check(self, dt: float) -> None:
        for t in self.times:
            n = t / dt
            if abs(n - round(n)) > 1e-9 * max(1.0, n):
                raise ValueError(f"specified time {t:g} s is not a whole multiple of the coupling step {dt:g} s")

    def __call__(self, sim) -> bool:
        return any(int(round(t / sim.dt)) == sim.iteration for t in self.times)

    def __repr__(self) -> str:
        return f"SpecifiedTimes({self.times})"


class WallTimeInterval(Schedule):
    """Fires when at least ``interval`` wall-clock seconds passed since it last fired (not at start)."""

    def __init__(self, interval_s: float, clock=_time.monotonic):
        if interval_s <= 0:
            raise ValueError(f"WallTimeInterval: interval must be > 0 s, got {interval_s!r}")
        self.interval = float(interval_s)
        self._clock = clock
        self._last: float | None = None

    def __call__(self, sim) -> bool:
        now = self._clock()
        if self._last is None:
            self._last = now
            return False
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False

    def __repr__(self) -> str:
        return f"WallTimeInterval({self.interval:g} s)"


class AndSchedule(Schedule):
    def __init__(self, *schedules: Schedule):
        self.schedules = schedules

    def check(self, dt: float) -> None:
        for s in self.schedules:
            s.check(dt)

    def __call__(self, sim) -> bool:
        return all([s(sim) for s in self.schedules])  # evaluate all (stateful ones update)


class OrSchedule(Schedule):
    def __init__(self, *schedules: Schedule):
        self.schedules = schedules

    def check(self, dt: float) -> None:
        for s in self.schedules:
            s.check(dt)

    def __call__(self, sim) -> bool:
        return any([s(sim) for s in self.schedules])
