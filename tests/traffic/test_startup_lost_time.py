"""Optional HCM start-up lost time at fixed-time signals (off by default)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twin.roads import RoadNetwork
from twin.traffic import TrafficModel

from .helpers import QCAP, VF


def signal_corridor(group=0):
    nodes = pd.DataFrame({"id": [0, 1, 2], "x": [0.0, 600.0, 1200.0], "y": 0.0,
                          "signal_phases_s": [None, (45.0, 45.0), None]})
    links = pd.DataFrame({"from": [0, 1], "to": [1, 2], "length_m": 600.0, "lanes": 1.0, "free_speed_mps": VF,
                          "signal_group": [group, -1]})
    return RoadNetwork.from_frames(nodes, links)


@pytest.mark.parametrize("lost", [0.0, 1.0, 2.0, 3.0])
def test_saturated_discharge_per_cycle_is_effective_green_times_capacity(lost):
    tm = TrafficModel(signal_corridor(), dt=1.0, startup_lost_time_s=lost)
    tm.add_trips(pd.DataFrame({"origin": 0, "destination": 2, "depart_s": np.arange(0.0, 1800.0)}))
    tm.run_one_step(900.0)                 # queue established
    a0 = tm.counts()["arrived"]
    tm.run_one_step(900.0)                 # 10 cycles of 90 s
    per_cycle = (tm.counts()["arrived"] - a0) / 10
    assert abs(per_cycle - (45.0 - lost) * QCAP) <= 1.0   # whole vehicles: within one per cycle


def test_first_vehicle_waits_for_the_lost_time_after_green_and_default_is_off():
    # group 1: green from 45 s to 90 s; the vehicle reaches the stop line at 600 / VF = 43.2 s (red)
    for lost, exit_s in ((None, 45.0), (2.0, 47.0)):
        kw = {} if lost is None else {"startup_lost_time_s": lost}
        tm = TrafficModel(signal_corridor(group=1), dt=1.0, **kw)
        tm.add_trips(pd.DataFrame({"origin": [0], "destination": [2], "depart_s": [0.0]}))
        tm.run_one_step(200.0)
        log = tm.link_log
        assert log.loc[log.link_id == 0, "exit_s"].iloc[0] == pytest.approx(exit_s)
    with pytest.raises(ValueError, match="startup_lost_time_s"):
        TrafficModel(signal_corridor(), startup_lost_time_s=-1.0)
