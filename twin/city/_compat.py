"""The team's ``Terrain`` (twin/terrain.py) and ``RoadNetwork`` (twin/roads.py), imported lazily."""
from __future__ import annotations


def terrain_class():
    from twin.terrain import Terrain
    return Terrain


def road_network_class():
    from twin.roads import RoadNetwork
    return RoadNetwork
