"""Roads: the directed road network and the readers that build it from files.

    from twin.roads import RoadNetwork
    net = RoadNetwork.from_osm("city.osm.pbf")        # or from_geojson / from_graphml / from_frames
    nodes, links = read_osm("city.osm.pbf")           # the readers return the two frames

Rooms: :mod:`twin.roads.network` (``RoadNetwork``: frames, CSR adjacency, nearest node),
:mod:`twin.roads.readers` (OSM, GeoJSON, GraphML -> frames; Vietnamese road-class defaults) and
:mod:`twin.roads.graph` (the one largest-strongly-connected pruning both use). Imports run one way:
network -> readers -> graph.
"""
from __future__ import annotations

from twin.roads.graph import RoadDataError, largest_strongly_connected
from twin.roads.network import (
    CRS,
    DEFAULT_JAM_DENSITY_VPM_PER_LANE,
    DEFAULT_REACTION_TIME_S,
    RoadNetwork,
    default_capacity_vph_per_lane,
)
from twin.roads.readers import (
    DEFAULT_CRS,
    DRIVABLE,
    JAM_DENSITY_PCU_PER_M,
    LINK_COLUMNS,
    ROAD_CLASS_DEFAULTS,
    highway_class,
    link_attributes,
    parse_lanes,
    parse_maxspeed_kmh,
    parse_oneway,
    read_geojson,
    read_graphml,
    read_osm,
    repair_connectivity,
    write_graphml,
)

__all__ = [
    "RoadNetwork", "default_capacity_vph_per_lane", "DEFAULT_JAM_DENSITY_VPM_PER_LANE", "DEFAULT_REACTION_TIME_S",
    "CRS", "DEFAULT_CRS", "RoadDataError", "largest_strongly_connected", "repair_connectivity",
    "read_osm", "read_geojson", "read_graphml", "write_graphml", "ROAD_CLASS_DEFAULTS", "JAM_DENSITY_PCU_PER_M",
    "DRIVABLE", "LINK_COLUMNS", "link_attributes", "highway_class", "parse_maxspeed_kmh", "parse_lanes",
    "parse_oneway",
]
