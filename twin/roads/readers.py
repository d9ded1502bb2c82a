"""Road-network readers: OSM (.osm XML, .osm.pbf), GeoJSON and GraphML to node and link frames.

Every reader returns ``(nodes, links)``, the two tables :meth:`twin.roads.RoadNetwork.from_frames`
takes (``RoadNetwork.from_osm/from_geojson/from_graphml`` do both steps), with geometry in EPSG:32649
(or the CRS asked for), node ids renumbered 0..N-1 (the file's id kept in ``orig_id``) and these link
columns::

    from, to, length_m, lanes, free_speed_mps, capacity_vph_per_lane, jam_density_vpm_per_lane,
    highway, name, oneway, source ("real"/"synthetic"), geometry (shapely LineString)

``lanes`` are per direction.  Missing OSM tags are filled from :data:`ROAD_CLASS_DEFAULTS`, the defaults
for Vietnamese road classes documented below.  Links are directed: a two-way road gives two links.
Graphs that are not strongly connected are repaired by keeping the largest strongly connected component,
with a warning saying how much was cut (``repair="largest"``, the default), or rejected
(``repair="error"``); the pruning is :func:`twin.roads.graph.largest_strongly_connected`, the same one
``RoadNetwork.largest_strongly_connected`` uses.

Defaults for Vietnamese road classes (per direction; capacity in PCU/h/lane, jam density PCU/m/lane):

=================  =====  ========  =========  =====================================================
OSM ``highway``    lanes  km/h      capacity   note
=================  =====  ========  =========  =====================================================
motorway           2      90        2000       expressways (Đà Nẵng–Quảng Ngãi: 80–120 km/h limit)
trunk              2      60        1800       QL1A through built-up areas (urban limit 60 km/h)
primary            2      50        1700       main city arterials (Phan Châu Trinh, Hùng Vương ...)
secondary          1      45        1500       provincial roads (ĐT), secondary arterials
tertiary           1      40        1300       district roads, collectors
unclassified       1      30        900        commune roads, field roads
residential        1      25        800        ward streets, kiệt/hẻm (alleys): motorbike-dominated
living_street      1      15        600
service            1      15        500
track              1      15        400
=================  =====  ========  =========  =====================================================

Speed limits: Thông tư 31/2019/TT-BGTVT (replaced from 2025 by Thông tư 38/2024/TT-BGTVT) — in
built-up areas 60 km/h on divided or one-way roads with ≥ 2 lanes, 50 km/h otherwise; outside them
80–90 km/h for cars, 70 km/h for motorbikes.  The free speeds above are mean free-flow speeds of the
mixed (≈ 80–90 % motorbike) stream, not limits.  Capacities follow the HCM / TCVN 13592:2022 order of
magnitude for urban streets in PCU (motorbike 0.25 PCU).  Jam density 0.15 PCU/m/lane (≈ 6.7 m per car).
``*_link`` classes take their parent's values.  An explicit ``maxspeed`` or ``lanes`` tag wins
(``VN:urban`` → 50, ``VN:rural`` → 80, ``VN:motorway`` → 120 km/h, ``mph`` converted).
"""
from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from twin.constants import JAM_DENSITY_PCU_PER_M, ROAD_CLASS_DEFAULTS  # tables: see the module notes
from twin.roads.graph import RoadDataError, largest_strongly_connected

__all__ = ["read_osm", "read_geojson", "read_graphml", "write_graphml", "repair_connectivity", "RoadDataError",
           "ROAD_CLASS_DEFAULTS", "JAM_DENSITY_PCU_PER_M", "DRIVABLE", "LINK_COLUMNS", "link_attributes",
           "highway_class", "parse_maxspeed_kmh", "parse_lanes", "parse_oneway"]

DEFAULT_CRS = "EPSG:32649"

DRIVABLE = set(ROAD_CLASS_DEFAULTS) | {f"{k}_link" for k in ("motorway", "trunk", "primary", "secondary", "tertiary")}

_ZONE_SPEEDS_KMH = {"vn:urban": 50.0, "vn:rural": 80.0, "vn:motorway": 120.0, "vn:living_street": 20.0,
                    "walk": 5.0, "none": 90.0}

LINK_COLUMNS = ["from", "to", "length_m", "lanes", "free_speed_mps", "capacity_vph_per_lane",
                "jam_density_vpm_per_lane", "highway", "name", "oneway", "source", "geometry"]


# ----------------------------------------------------------------------------------- tags
def _first(value):
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        inner = [v.strip(" '\"") for v in value[1:-1].split(",")]
        return inner[0] if inner else None
    return value


def highway_class(tag) -> str:
    h = str(_first(tag) or "road").strip().lower()
    if h.endswith("_link"):
        h = h[:-5]
    return h if h in ROAD_CLASS_DEFAULTS else "road"


def parse_maxspeed_kmh(tag) -> float | None:
    """OSM ``maxspeed`` to km/h: ``"50"``, ``"50 km/h"``, ``"30 mph"``, ``"VN:urban"``; None if unknown."""
    v = _first(tag)
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v) if v > 0 else None
    s = str(v).strip().lower().split(";")[0]
    if s in _ZONE_SPEEDS_KMH:
        return _ZONE_SPEEDS_KMH[s]
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", s)
    if not m:
        return None
    val = float(m.group(1))
    if m.group(2) == "mph":
        val *= 1.609344
    elif m.group(2) == "knots":
        val *= 1.852
    return val if val > 0 else None


def parse_lanes(tag) -> float | None:
    v = _first(tag)
    if v is None:
        return None
    try:
        val = float(str(v).split(";")[0])
    except ValueError:
        return None
    return val if val > 0 else None


def parse_oneway(tag, highway=None, junction=None) -> int:
    """+1 one-way forward, -1 one-way reverse, 0 two-way (roundabouts and motorways one-way)."""
    v = _first(tag)
    s = str(v).strip().lower() if v is not None else ""
    if s in ("yes", "true", "1"):
        return 1
    if s in ("-1", "reverse"):
        return -1
    if s in ("no", "false", "0"):
        return 0
    if str(_first(junction) or "").lower() in ("roundabout", "circular"):
        return 1
    if str(_first(highway) or "").lower() == "motorway":
        return 1
    return 0


def link_attributes(highway, lanes_tag=None, maxspeed_tag=None, oneway=0) -> tuple[int, float, float]:
    """(lanes per direction, free speed m/s, capacity PCU/h/lane) from OSM tags and the class defaults."""
    cls = highway_class(highway)
    d_lanes, d_speed, d_cap = ROAD_CLASS_DEFAULTS[cls]
    total = parse_lanes(lanes_tag)
    if total is not None:
        lanes = max(1, int(round(total if oneway else total / 2.0 + 0.01)))
    else:
        lanes = d_lanes
    speed = parse_maxspeed_kmh(maxspeed_tag) or d_speed
    return lanes, speed / 3.6, d_cap


# ----------------------------------------------------------------------------------- frames
def _geod_length(lonlat_lines) -> np.ndarray:
    from pyproj import Geod
    g = Geod(ellps="WGS84")
    return np.array([g.geometry_length(line) for line in lonlat_lines])


def _as_frames(nodes: pd.DataFrame, links: pd.DataFrame, *, path,
               repair: str = "largest") -> tuple[pd.DataFrame, pd.DataFrame]:
    if len(links) == 0 or len(nodes) == 0:
        raise RoadDataError(f"{path}: no drivable road links found (empty extract?)")
    return repair_connectivity(nodes, links, path=path, repair=repair)


def repair_connectivity(nodes: pd.DataFrame, links: pd.DataFrame, *, path="road network",
                        repair: str = "largest") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the largest strongly connected component (with a warning) or raise (``repair='error'``).

    Node ids are renumbered 0..N-1 (the old id is kept in ``orig_id``), links 0..L-1.
    """
    nodes, links = largest_strongly_connected(nodes, links, what=str(path), repair=repair, stacklevel=3)
    index = pd.Index(nodes["id"].to_numpy())
    nodes = nodes.copy()
    if "orig_id" not in nodes:
        nodes["orig_id"] = nodes["id"]
    nodes["id"] = np.arange(len(nodes))
    links = links.copy()
    links["from"] = index.get_indexer(links["from"].to_numpy())
    links["to"] = index.get_indexer(links["to"].to_numpy())
    return nodes.reset_index(drop=True), links.reset_index(drop=True)


def _edges_to_links(edges: pd.DataFrame, *, geometry_xy, length_m, source: str) -> pd.DataFrame:
    """Expand undirected/oneway edge rows (u, v, highway, lanes, maxspeed, oneway, name) into directed links."""
    rows = []
    for i, e in enumerate(edges.itertuples(index=False)):
        ow = int(e.oneway_dir)
        lanes, v, cap = link_attributes(e.highway, e.lanes, e.maxspeed, ow)
        geom = geometry_xy[i]
        base = dict(length_m=float(length_m[i]), lanes=lanes, free_speed_mps=v, capacity_vph_per_lane=cap,
                    jam_density_vpm_per_lane=JAM_DENSITY_PCU_PER_M, highway=highway_class(e.highway),
                    name=str(_first(e.name) or ""), oneway=bool(ow != 0), source=source)
        if ow >= 0:
            rows.append({"from": e.u, "to": e.v, **base, "geometry": geom})
        if ow <= 0:
            rows.append({"from": e.v, "to": e.u, **base, "geometry": geom.reverse()})
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


def _project_lines(lines_lonlat, dst_crs):
    import shapely
    from pyproj import CRS, Transformer
    tr = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_user_input(dst_crs), always_xy=True)
    return list(shapely.transform(np.asarray(list(lines_lonlat), dtype=object),
                                  lambda x, y: tr.transform(x, y), interleaved=False))


def _check_lonlat(path, x, y, field="geometry"):
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if len(x) and (np.nanmax(np.abs(x)) > 180 or np.nanmax(np.abs(y)) > 90):
        raise RoadDataError(f"{path}: field {field!r} has coordinates like ({x[0]:.1f}, {y[0]:.1f}) that are not "
                            "longitude/latitude although the file declares (or defaults to) EPSG:4326: wrong CRS?")


# ----------------------------------------------------------------------------------- OSM
def read_osm(path, *, crs=DEFAULT_CRS, repair: str = "largest", bbox=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The drivable roads of an OSM ``.osm.pbf`` (pyrosm) or ``.osm`` XML file (osmnx) as ``(nodes, links)``.

    ``bbox=(west, south, east, north)`` in degrees clips a PBF extract.  Lengths are geodesic (WGS84).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"OSM file not found: {path}")
    name = path.name.lower()
    if name.endswith(".pbf"):
        edges, nodes_ll = _osm_pbf_edges(path, bbox)
    elif name.endswith(".osm") or name.endswith(".xml"):
        edges, nodes_ll = _osm_xml_edges(path)
    else:
        raise RoadDataError(f"{path}: unknown OSM format (expected .osm.pbf, .osm or .xml)")
    return _osm_frames_to_network(path, edges, nodes_ll, crs=crs, repair=repair)


def _osm_pbf_edges(path: Path, bbox):
    try:
        import pyrosm
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("reading .osm.pbf needs pyrosm: pip install 'tamky-twin[osm]'") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        osm = pyrosm.OSM(str(path), bounding_box=list(bbox) if bbox else None)
        res = osm.get_network(network_type="driving", nodes=True)
    if res is None or res[0] is None or len(res[1]) == 0:
        raise RoadDataError(f"{path}: no drivable roads in the extract (field 'highway'): empty extract?")
    nodes, edges = res
    edges = pd.DataFrame({
        "u": edges["u"].to_numpy(), "v": edges["v"].to_numpy(),
        "highway": edges["highway"].to_numpy(),
        "lanes": edges["lanes"].to_numpy() if "lanes" in edges else None,
        "maxspeed": edges["maxspeed"].to_numpy() if "maxspeed" in edges else None,
        "oneway": edges["oneway"].to_numpy() if "oneway" in edges else None,
        "junction": edges["junction"].to_numpy() if "junction" in edges else None,
        "name": edges["name"].to_numpy() if "name" in edges else None,
        "geometry": list(edges.geometry),
    })
    nodes_ll = pd.DataFrame({"osm_id": nodes["id"].to_numpy(), "lon": nodes["lon"].to_numpy(),
                             "lat": nodes["lat"].to_numpy()})
    return edges, nodes_ll


def _osm_xml_edges(path: Path):
    try:
        import osmnx as ox
    except ImportError as exc:  # pragma: no cover
        raise ImportError("reading .osm XML needs osmnx: pip install 'tamky-twin[osm]'") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            G = ox.graph_from_xml(str(path), bidirectional=False, simplify=True, retain_all=True)
        except Exception as exc:  # osmnx raises its own errors for empty graphs
            raise RoadDataError(f"{path}: could not build a road graph ({exc}): empty extract?") from exc
    return _nx_to_edges(G, path, directed_given=True)


def _nx_to_edges(G, path, directed_given: bool):
    from shapely import wkt
    from shapely.geometry import LineString
    nodes_ll = pd.DataFrame([{"osm_id": n, "lon": float(d["x"]), "lat": float(d["y"])} for n, d in G.nodes(data=True)])
    if len(nodes_ll) == 0:
        raise RoadDataError(f"{path}: graph has no nodes (empty extract?)")
    xy = nodes_ll.set_index("osm_id")
    rows = []
    for u, v, d in G.edges(data=True):
        hw = d.get("highway")
        if highway_class(hw) == "road" and str(_first(hw)) not in ("road",) and hw is not None and str(_first(hw)) not in DRIVABLE:
            continue
        geom = d.get("geometry")
        if isinstance(geom, str):
            geom = wkt.loads(geom)
        if geom is None:
            geom = LineString([(xy.at[u, "lon"], xy.at[u, "lat"]), (xy.at[v, "lon"], xy.at[v, "lat"])])
        rows.append({"u": u, "v": v, "highway": hw, "lanes": d.get("lanes"), "maxspeed": d.get("maxspeed"),
                     # a directed graph already lists both directions: each edge is one-way
                     "oneway": "yes" if directed_given else d.get("oneway"), "junction": None,
                     "name": d.get("name"), "geometry": geom})
    edges = pd.DataFrame(rows, columns=["u", "v", "highway", "lanes", "maxspeed", "oneway", "junction", "name", "geometry"])
    return edges, nodes_ll


def _osm_frames_to_network(path, edges: pd.DataFrame, nodes_ll: pd.DataFrame, *, crs, repair):
    edges = edges[edges["highway"].map(lambda h: str(_first(h) or "").lower() in DRIVABLE)].reset_index(drop=True)
    if len(edges) == 0:
        raise RoadDataError(f"{path}: no drivable roads in the extract (field 'highway'): empty extract?")
    _check_lonlat(path, nodes_ll["lon"], nodes_ll["lat"])
    edges["oneway_dir"] = [parse_oneway(o, h, j) for o, h, j in zip(edges["oneway"], edges["highway"], edges["junction"])]
    length = _geod_length(edges["geometry"])
    geom_xy = _project_lines(edges["geometry"], crs)
    links = _edges_to_links(edges, geometry_xy=geom_xy, length_m=length, source="real")
    from pyproj import Transformer
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    x, y = tr.transform(nodes_ll["lon"].to_numpy(), nodes_ll["lat"].to_numpy())
    nodes = pd.DataFrame({"id": nodes_ll["osm_id"].to_numpy(), "x": x, "y": y, "source": "real"})
    used = pd.unique(np.concatenate([links["from"].to_numpy(), links["to"].to_numpy()]))
    nodes = nodes[nodes["id"].isin(used)].drop_duplicates("id")
    return _as_frames(nodes, links, path=path, repair=repair)


# ----------------------------------------------------------------------------------- GeoJSON
def read_geojson(path, *, crs=DEFAULT_CRS, repair: str = "largest", snap_m: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Road centrelines (LineString/MultiLineString features) of a GeoJSON file as ``(nodes, links)``.

    Properties used when present: ``highway``, ``lanes`` (total, OSM sense) or ``lanes_per_direction``,
    ``maxspeed`` or ``free_speed_mps``, ``capacity_vph_per_lane``, ``jam_density_vpm_per_lane``,
    ``oneway``, ``name``, ``source``.  Lines are split into links at their ends and at every vertex shared
    with another line (within ``snap_m``).  The file's CRS (RFC 7946: WGS84, or a legacy ``crs`` member)
    is reprojected to ``crs``.
    """
    import geopandas as gpd
    from shapely.geometry import LineString

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"GeoJSON file not found: {path}")
    try:
        gdf = gpd.read_file(path)
    except Exception as exc:
        raise RoadDataError(f"{path}: not a readable GeoJSON file ({exc})") from exc
    if len(gdf) == 0:
        raise RoadDataError(f"{path}: no features (empty extract?)")
    gdf = gdf[gdf.geometry.notna() & gdf.geom_type.isin(["LineString", "MultiLineString"])]
    if len(gdf) == 0:
        raise RoadDataError(f"{path}: no LineString features (field 'geometry')")
    gdf = _vn_layer_aliases(gdf)
    if len(gdf) == 0:
        raise RoadDataError(f"{path}: no road features (only railways?)")
    if gdf.crs is None:
        gdf = gdf.set_crs(4326)
    if gdf.crs.to_epsg() == 4326:
        b = gdf.total_bounds
        _check_lonlat(path, [b[0], b[2]], [b[1], b[3]])
    gdf = gdf.explode(index_parts=False).reset_index(drop=True)
    gproj = gdf.to_crs(crs)

    # node at line ends and at vertices shared by >1 line
    key = lambda p: (round(p[0] / snap_m), round(p[1] / snap_m))  # noqa: E731
    count: dict = {}
    for g in gproj.geometry:
        cs = list(g.coords)
        closed = key(cs[0]) == key(cs[-1])
        for j, c in enumerate(cs):
            k = key(c)
            # ends, and every vertex of a closed ring, are nodes
            count[k] = count.get(k, 0) + (2 if (j in (0, len(cs) - 1) or closed) else 1)
    node_id: dict = {}
    node_xy = []

    def nid(c):
        k = key(c)
        if k not in node_id:
            node_id[k] = len(node_xy)
            node_xy.append(c[:2])
        return node_id[k]

    props = gdf.drop(columns="geometry")
    rows = []
    for g, (_, pr) in zip(gproj.geometry, props.iterrows()):
        cs = list(g.coords)
        start = 0
        for j in range(1, len(cs)):
            if j == len(cs) - 1 or count[key(cs[j])] > 1:
                seg = LineString(cs[start:j + 1])
                if seg.length > 0:
                    rows.append((nid(cs[start]), nid(cs[j]), seg, pr))
                start = j
    links = []
    for u, v, seg, pr in rows:
        get = lambda k, default=None, pr=pr: (pr[k] if k in pr.index and pr[k] is not None and not (isinstance(pr[k], float) and math.isnan(pr[k])) else default)  # noqa: E731
        hw = get("highway", "road")
        ow = parse_oneway(get("oneway"), hw, get("junction"))
        lanes, v_mps, cap = link_attributes(hw, get("lanes"), get("maxspeed"), ow)
        if get("lanes_per_direction") is not None:
            lanes = int(get("lanes_per_direction"))
        if get("free_speed_mps") is not None:
            v_mps = float(get("free_speed_mps"))
        cap = float(get("capacity_vph_per_lane", cap))
        jam = float(get("jam_density_vpm_per_lane", JAM_DENSITY_PCU_PER_M))
        base = dict(length_m=float(seg.length) if gproj.crs.is_projected else float("nan"),
                    lanes=lanes, free_speed_mps=v_mps, capacity_vph_per_lane=cap, jam_density_vpm_per_lane=jam,
                    highway=highway_class(hw), name=str(get("name", "")), oneway=bool(ow != 0),
                    source=str(get("source", "real")))
        if ow >= 0:
            links.append({"from": u, "to": v, **base, "geometry": seg})
        if ow <= 0:
            links.append({"from": v, "to": u, **base, "geometry": seg.reverse()})
    links = pd.DataFrame(links, columns=LINK_COLUMNS)
    xy = np.array(node_xy, float).reshape(-1, 2)
    nodes = pd.DataFrame({"id": np.arange(len(xy)), "x": xy[:, 0], "y": xy[:, 1]})
    return _as_frames(nodes, links, path=path, repair=repair)


def _vn_layer_aliases(gdf):
    """Vietnamese GIS road layers: ``ten`` → name; ``loai_duong``/``cap_duong`` → highway; railways dropped."""
    gdf = gdf.copy()
    if "name" not in gdf and "ten" in gdf:
        gdf["name"] = gdf["ten"]
    if "loai_duong" in gdf:
        gdf = gdf[gdf["loai_duong"] != "Đường sắt"].copy()
        if "highway" not in gdf:
            cap = gdf["cap_duong"] if "cap_duong" in gdf else ""
            gdf["highway"] = np.where(gdf["loai_duong"] == "Đường chính",
                                      np.where(cap == "Quốc Gia", "trunk", "primary"), "secondary")
    if "railway" in gdf:
        gdf = gdf[gdf["railway"].isna()].copy()
    return gdf


# ----------------------------------------------------------------------------------- GraphML
def read_graphml(path, *, crs=DEFAULT_CRS, repair: str = "largest") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A GraphML road graph (osmnx ``save_graphml`` output or any graph with node ``x``/``y``) as ``(nodes, links)``.

    Node coordinates are in the graph's ``crs`` attribute (default EPSG:4326).  Directed graphs give one
    link per edge; undirected graphs one link each way.  Edge attributes as in OSM (``highway``, ``lanes``,
    ``maxspeed``, ``oneway``, ``length``, ``geometry`` as WKT) or explicit (``free_speed_mps`` ...).
    """
    import networkx as nx
    import shapely
    from pyproj import CRS, Transformer
    from shapely import wkt
    from shapely.geometry import LineString

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"GraphML file not found: {path}")
    try:
        G = nx.read_graphml(path)
    except Exception as exc:
        raise RoadDataError(f"{path}: not a readable GraphML file ({exc})") from exc
    if G.number_of_nodes() == 0:
        raise RoadDataError(f"{path}: graph has no nodes (empty extract?)")
    src_crs = CRS.from_user_input(G.graph.get("crs", "EPSG:4326"))
    tr = Transformer.from_crs(src_crs, CRS.from_user_input(crs), always_xy=True)
    ids = list(G.nodes)
    try:
        x = np.array([float(G.nodes[n]["x"]) for n in ids])
        y = np.array([float(G.nodes[n]["y"]) for n in ids])
    except KeyError as exc:
        raise RoadDataError(f"{path}: node attribute {exc} missing (need 'x' and 'y')") from exc
    if src_crs.to_epsg() == 4326:
        _check_lonlat(path, x, y, field="x/y")
    X, Y = tr.transform(x, y)
    pos = {n: i for i, n in enumerate(ids)}
    nodes = pd.DataFrame({"id": np.arange(len(ids)), "x": X, "y": Y, "orig_id": ids})
    directed = G.is_directed()
    links = []
    for u, v, d in G.edges(data=True):
        hw = d.get("highway", "road")
        geom = d.get("geometry")
        if isinstance(geom, str):
            geom = shapely.transform(wkt.loads(geom), lambda x, y: tr.transform(x, y), interleaved=False)
        else:
            geom = LineString([(X[pos[u]], Y[pos[u]]), (X[pos[v]], Y[pos[v]])])
        ow = 1 if directed else parse_oneway(d.get("oneway"), hw)
        lanes, v_mps, cap = link_attributes(hw, d.get("lanes"), d.get("maxspeed"), ow)
        if "lanes_per_direction" in d:
            lanes = int(float(d["lanes_per_direction"]))
        if "free_speed_mps" in d:
            v_mps = float(d["free_speed_mps"])
        length = float(d["length"]) if "length" in d else (float(d["length_m"]) if "length_m" in d else geom.length)
        if not (length > 0):
            raise RoadDataError(f"{path}: edge {u}->{v} has length {length!r} (field 'length')")
        base = dict(length_m=length, lanes=lanes, free_speed_mps=v_mps,
                    capacity_vph_per_lane=float(d.get("capacity_vph_per_lane", cap)),
                    jam_density_vpm_per_lane=float(d.get("jam_density_vpm_per_lane", JAM_DENSITY_PCU_PER_M)),
                    highway=highway_class(hw), name=str(d.get("name", "")), oneway=bool(directed or ow != 0),
                    source=str(d.get("source", "real")))
        if ow >= 0:
            links.append({"from": pos[u], "to": pos[v], **base, "geometry": geom})
        if ow <= 0:
            links.append({"from": pos[v], "to": pos[u], **base, "geometry": geom.reverse()})
    links = pd.DataFrame(links, columns=LINK_COLUMNS)
    return _as_frames(nodes, links, path=path, repair=repair)


def write_graphml(net, path, crs=DEFAULT_CRS) -> Path:
    """Write a RoadNetwork as directed GraphML (node x/y in ``crs``; edge attributes and WKT geometry)."""
    import networkx as nx
    G = nx.MultiDiGraph(crs=str(crs))
    for r in net.nodes.itertuples(index=False):
        G.add_node(int(r.id), x=float(r.x), y=float(r.y))
    for r in net.links.to_dict("records"):
        G.add_edge(int(r["from"]), int(r["to"]), length_m=float(r["length_m"]),
                   lanes_per_direction=int(r["lanes"]), free_speed_mps=float(r["free_speed_mps"]),
                   capacity_vph_per_lane=float(r["capacity_vph_per_lane"]),
                   jam_density_vpm_per_lane=float(r["jam_density_vpm_per_lane"]), highway=str(r.get("highway", "road")),
                   name=str(r.get("name", "")), source=str(r.get("source", "real")), geometry=r["geometry"].wkt)
    nx.write_graphml(G, path)
    return Path(path)
