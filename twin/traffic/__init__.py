"""The traffic component: individual vehicles on a link transmission model, flood-aware routing.

``TrafficModel`` (public) steps the C++ engine; ``twin.traffic.demand`` makes trips from OD matrices
and the background daily profile; ``twin.traffic.flood`` holds the depth-speed curve and stall depths.
"""
from twin.traffic.coupling import LinkDepthSampler
from twin.traffic.demand import background_trips, daily_profile, trips_from_od
from twin.traffic.flood import PCU, STALL_DEPTH_M, flooded_speed_mps, pregnolato_speed_kmh
from twin.traffic.model import ACCEL_MPS2, TRIP_STATES, VEHICLE_CLASSES, TrafficModel, TripStatus

__all__ = [
    "TrafficModel", "TripStatus", "LinkDepthSampler", "VEHICLE_CLASSES", "TRIP_STATES", "PCU", "STALL_DEPTH_M",
    "ACCEL_MPS2",
    "pregnolato_speed_kmh", "flooded_speed_mps", "trips_from_od", "daily_profile", "background_trips",
]
