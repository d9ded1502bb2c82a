"""Small corridors and grids built through the public API, and the traffic constants the tests share."""
from __future__ import annotations

import numpy as np
import pandas as pd

from twin.roads import RoadNetwork

VF = 50 / 3.6                 # free speed, m/s
KJ = 1 / 7.5                  # jam density, veh/m/lane
W = 7.5                       # backward wave speed for tau = 1 s, m/s
QCAP = VF * W * KJ / (VF + W)  # veh/s/lane (2,338 veh/h)


def corridor(lengths, lanes, *, vf=VF, signal=None):
    """Nodes 0..n in a line along x, links i -> i+1 with the given lengths and lanes."""
    lengths = np.asarray(lengths, dtype=float)
    x = np.concatenate([[0.0], np.cumsum(lengths)])
    nodes = pd.DataFrame({"id": np.arange(len(x)), "x": x, "y": 0.0})
    links = pd.DataFrame({"from": np.arange(len(lengths)), "to": np.arange(1, len(x)), "length_m": lengths,
                          "lanes": np.broadcast_to(lanes, lengths.shape).astype(float), "free_speed_mps": vf})
    return RoadNetwork.from_frames(nodes, links)


def uniform_trips(origin, destination, rate_vps, t0, t1, vehicle_class="car"):
    """Deterministic arrivals at a constant rate (veh/s) between t0 and t1."""
    n = int(round((t1 - t0) * rate_vps))
    dep = t0 + (np.arange(n) + 0.5) / rate_vps
    return pd.DataFrame({"origin": origin, "destination": destination, "depart_s": dep,
                         "vehicle_class": vehicle_class})
