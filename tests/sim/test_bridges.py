"""Roads over Tam Kỳ's rivers and lagoon: traffic meets the water above the banks, not the channel."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.build import build_twin
from twin.scenario import load_scenario

MOLAVE = Path(__file__).resolve().parents[2] / "scenarios" / "tamky_molave_2020.yaml"


def test_bridges_are_open_with_the_rivers_at_their_normal_level():
    sc = load_scenario(MOLAVE, ["duration=600", "people=null", "services=null", "interventions=[]"])
    tw = build_twin(sc)
    bridge = np.asarray(tw.traffic_network.links["bridge"], bool)
    assert bridge.sum() >= 10
    assert tw.road_water is not None
    tw.update_roads()  # t = 0: rivers, lagoon and reservoir at their initial (normal) level
    assert tw.link_depth[bridge].max() == 0.0
    assert not tw.closed[bridge].any()
    # the same coupling without the bank rule reads the channel depth and closes bridges to cars
    rw, tw.road_water = tw.road_water, None
    tw.update_roads()
    assert tw.link_depth[bridge].max() > 1.0
    tw.road_water = rw


def test_scenario_switches_vehicle_acceleration():
    """traffic.acceleration / traffic.accel_mps2 reach the traffic model (default: SUMO's class values)."""
    from twin.traffic import ACCEL_MPS2

    base = ["duration=600", "people=null", "services=null", "interventions=[]", "resolution_m=300"]
    tw = build_twin(load_scenario(MOLAVE, base))
    assert tw.traffic.accel_mps2 == ACCEL_MPS2
    tw = build_twin(load_scenario(MOLAVE, base + ["traffic.acceleration=false"]))
    assert all(np.isinf(a) for a in tw.traffic.accel_mps2.values())
    tw = build_twin(load_scenario(MOLAVE, base + ["traffic.accel_mps2.motorbike=3.5"]))
    assert tw.traffic.accel_mps2["motorbike"] == 3.5 and tw.traffic.accel_mps2["car"] == ACCEL_MPS2["car"]
