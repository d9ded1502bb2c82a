from types import SimpleNamespace

import pytest

from twin.output.schedules import IterationInterval, SpecifiedTimes, TimeInterval, WallTimeInterval


def fired(schedule, dt, n):
    out = []
    for i in range(n + 1):
        if schedule(SimpleNamespace(iteration=i, dt=dt, time=i * dt)):
            out.append(i * dt)
    return out


def test_time_interval_is_exact_in_iterations():
    # 0.1 s steps accumulate float error as a running sum; iteration counting does not
    assert fired(TimeInterval(0.3), 0.1, 30) == [i * 0.1 for i in range(0, 31, 3)]
    assert fired(TimeInterval(600), 60, 60) == [0, 600, 1200, 1800, 2400, 3000, 3600]


def test_interval_not_a_multiple_is_rejected():
    with pytest.raises(ValueError, match="not a whole multiple of the coupling step 60"):
        TimeInterval(90).check(60)
    with pytest.raises(ValueError, match="positive"):
        IterationInterval(0)
    with pytest.raises(ValueError):
        SpecifiedTimes([30]).check(60)


def test_iteration_and_specified_times():
    assert fired(IterationInterval(4), 1, 10) == [0, 4, 8]
    assert fired(SpecifiedTimes([120, 60, 600]), 60, 5) == [60, 120]


def test_wall_time_interval_uses_its_clock():
    now = [0.0]
    s = WallTimeInterval(10, clock=lambda: now[0])
    sim = SimpleNamespace(iteration=0, dt=1)
    assert not s(sim)
    now[0] = 9.9
    assert not s(sim)
    now[0] = 10.0
    assert s(sim)
    now[0] = 15
    assert not s(sim)
