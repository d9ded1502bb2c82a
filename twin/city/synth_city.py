"""Synthetic vector layers of the Tam Kỳ bundle: roads, places, wards, population, inflows.

Built on the 30 m rasters of :mod:`twin.city.synth` and the real QL1A geometry.  Positions of city
arterials and places are synthetic (placed to match the city's known layout: the arterial grid runs
parallel to QL1A, which crosses the city north-west to south-east); names are those of real streets and
institutions where the ``note`` column says so.  Deterministic (seeded ``numpy.random.Generator``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from shapely.geometry import LineString, Point, box
from shapely.ops import nearest_points, unary_union

from twin.city import synth
from twin.roads import JAM_DENSITY_PCU_PER_M, ROAD_CLASS_DEFAULTS

U_DIR = np.array([np.cos(np.radians(-36.0)), np.sin(np.radians(-36.0))])   # along QL1A, towards ESE
V_DIR = np.array([-U_DIR[1], U_DIR[0]])                                     # towards NNE
CENTRE = synth.to_utm(np.array(synth.CENTRE_LONLAT))
LATTICE_M = 125.0
# local-street spacing in lattice steps per land-cover class (dense 125 m, sparse 250 m, paddy 750 m ...)
STREET_STEP = {3: 1, 4: 2, 5: 6, 7: 4, 6: 12}


def uv(u_km: float, v_km: float) -> np.ndarray:
    return CENTRE + 1000.0 * (u_km * U_DIR + v_km * V_DIR)


# name, highway, (u, v) km waypoints   -- synthetic alignments named after the city's real streets
ARTERIALS_UV = [
    ("Phan Châu Trinh", "primary", [(-4.2, 0.0), (4.3, 0.0)]),
    ("Huỳnh Thúc Kháng", "secondary", [(-3.4, -0.9), (3.4, -0.9)]),
    ("Trần Cao Vân", "secondary", [(-3.6, 1.3), (4.0, 1.3)]),
    ("Điện Biên Phủ", "primary", [(-3.0, 2.4), (5.0, 2.4)]),
    ("Hùng Vương", "primary", [(0.0, -2.6), (0.0, 4.2)]),
    ("Trần Quý Cáp", "secondary", [(-1.8, -2.3), (-1.8, 3.6)]),
    ("Nguyễn Văn Trỗi", "secondary", [(1.9, -2.0), (1.9, 3.4)]),
    ("Lý Thường Kiệt", "secondary", [(-3.4, -1.8), (-3.4, 3.0)]),
    ("Tôn Đức Thắng", "secondary", [(3.6, -1.5), (3.6, 3.6)]),
]
# lon/lat alignments
ARTERIALS_LL = [
    ("Nguyễn Hoàng (đường đi biển Tam Thanh)", "primary", None),   # from Điện Biên Phủ to Tam Thanh: built below
    ("Đường Tam Kỳ – Phú Ninh", "secondary", None),
]

WARDS = [  # name, seed (lon, lat: where the ward's People's Committee and police are placed, inside the real
    # ward polygon), persons and households (synthetic, superseded by twin.city.census), elderly, children,
    # motorbike, car, storeys (synthetic shares)
    ("Tam Kỳ", (108.4790, 15.5680), 38_600, 11_200, 0.135, 0.220, 0.80, 0.12, 2.4),
    ("Bàn Thạch", (108.4671, 15.5953), 27_900, 8_150, 0.140, 0.235, 0.82, 0.09, 1.8),
    ("Hương Trà", (108.5052, 15.5585), 24_300, 7_050, 0.150, 0.240, 0.83, 0.08, 1.6),
    ("Quảng Phú", (108.5155, 15.5953), 29_200, 8_600, 0.145, 0.245, 0.82, 0.08, 1.7),
]


# ----------------------------------------------------------------------------- helpers
class _Grid:
    def __init__(self, R: dict):
        self.lc = R["landcover"]
        self.t = R["transform"]
        self.r = self.t.a

    def sample(self, xy) -> np.ndarray:
        xy = np.atleast_2d(np.asarray(xy, float))
        c = np.floor((xy[:, 0] - self.t.c) / self.r).astype(int)
        r = np.floor((self.t.f - xy[:, 1]) / self.r).astype(int)
        ny, nx = self.lc.shape
        out = np.zeros(len(xy), np.uint8)
        ok = (c >= 0) & (c < nx) & (r >= 0) & (r < ny)
        out[ok] = self.lc[r[ok], c[ok]]
        return out


def _domain_box(R=None):
    if R is None:
        return box(synth.X0 + 1, synth.Y0 + 1, synth.X1 - 1, synth.Y1 - 1)
    b = _bounds(R)
    return box(b[0] + 1, b[1] + 1, b[2] - 1, b[3] - 1)


def _bounds(R):
    t = R["transform"]
    ny, nx = R["landcover"].shape
    return (t.c, t.f - ny * t.a, t.c + nx * t.a, t.f)


def ql1a_lines(national_roads_geojson: Path) -> list[LineString]:
    fc = json.loads(Path(national_roads_geojson).read_text())
    lines = []
    for f in fc["features"]:
        if f["properties"].get("ten") != "Quốc lộ 1A":
            continue
        for part in f["geometry"]["coordinates"]:
            xy = synth.to_utm(np.array(part))
            g = LineString(xy).intersection(_domain_box())
            if g.is_empty:
                continue
            lines += list(g.geoms) if hasattr(g, "geoms") else [g]
    merged = unary_union(lines)
    from shapely.ops import linemerge
    m = linemerge(merged) if not isinstance(merged, LineString) else merged
    return list(m.geoms) if hasattr(m, "geoms") else [m]


def coastal_road(R, sources) -> LineString:
    """Võ Chí Công coastal road: on the dune strip, 55 % of the way from the Trường Giang to the shore."""
    tg = np.vstack([synth._densify(line, 400.0) for line in sources["rivers"]])
    shore = np.vstack([synth._densify(line, 50.0) for line in sources["shoreline"]])
    from scipy.spatial import cKDTree
    tree = cKDTree(shore)
    d, k = tree.query(tg)
    ok = (d > 300) & (d < 3500) & (tg[:, 1] > synth.to_utm(np.array((108.6, 15.505)))[1])
    pts = tg[ok] + 0.55 * (shore[k[ok]] - tg[ok])
    line = LineString(synth._chaikin(pts, 2)).intersection(_domain_box())
    if hasattr(line, "geoms"):
        line = max(line.geoms, key=lambda g: g.length)
    return line


def _extend_to(line: LineString, others: list[LineString], tol: float = 450.0) -> LineString:
    """Move each end of ``line`` onto the nearest earlier line within ``tol`` (5 m past it, so they cross)."""
    cs = [np.array(c) for c in line.coords]
    for end, nb in ((0, 1), (-1, -2)):
        p = Point(cs[end])
        best = None
        for o in others:
            dd = o.distance(p)
            if dd < tol and (best is None or dd < best[0]):
                best = (dd, nearest_points(o, p)[0])
        if best is not None:
            q = np.array(best[1].coords[0])
            dirv = q - cs[nb]
            n = np.linalg.norm(dirv)
            cs[end] = q + (dirv / n * 5.0 if n > 0 else 0)
    return LineString(cs)


# ----------------------------------------------------------------------------- roads
def build_roads(R: dict, sources: dict, national_roads_geojson: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    major: list[tuple[LineString, str, str, str]] = []   # geometry, highway, name, source
    for g in ql1a_lines(national_roads_geojson):
        major.append((g, "trunk", "Quốc lộ 1A", "real"))
    placed = [m[0] for m in major]
    for name, hw, pts in ARTERIALS_UV:
        g = LineString([uv(*p) for p in pts]).intersection(_domain_box())
        g = _extend_to(g, placed)
        major.append((g, hw, name, "synthetic"))
        placed.append(g)
    # Nguyễn Hoàng to Tam Thanh, the coastal road, the Phú Ninh road
    coast = coastal_road(R, sources)
    nh = LineString([uv(0.6, 2.4), *synth.to_utm(np.array([(108.5200, 15.5725), (108.5450, 15.5690),
                                                              (108.5600, 15.5665)]))])
    major.append((_extend_to(coast, placed), "primary", "Võ Chí Công (đường ven biển 129)", "synthetic"))
    placed.append(major[-1][0])
    nh = _extend_to(_extend_to(nh, placed), [major[-1][0]], tol=2500.0)   # ends on the coastal road
    major.append((nh, "primary", "Nguyễn Hoàng", "synthetic"))
    placed.append(major[-1][0])
    pn = LineString([uv(-1.8, -2.3), *synth.to_utm(np.array([(108.4640, 15.5330), (108.4600, 15.5215)]))])
    major.append((_extend_to(pn, placed), "secondary", "Đường Tam Kỳ – Phú Ninh", "synthetic"))

    return build_network(R, major, CENTRE, U_DIR, LATTICE_M, STREET_STEP)


def build_network(R: dict, major: list, centre, u_dir, spacing: float, step_map: dict):
    """Node the major roads, add a local-street lattice (``spacing`` m, every ``step_map[class]``-th line
    per land-cover class, never across water), connect them, and contract degree-2 chains.

    ``major``: list of (LineString, highway, name, source).  Returns (nodes, undirected edges).
    """
    grid = _Grid(R)
    X0b, Y0b, X1b, Y1b = _bounds(R)
    v_dir = np.array([-u_dir[1], u_dir[0]])
    # node the major roads among themselves
    noded = unary_union([m[0] for m in major])
    segs = list(noded.geoms) if hasattr(noded, "geoms") else [noded]
    edges = []   # (xy_a, xy_b, geometry, highway, name, source)
    for s in segs:
        mid = s.interpolate(0.5, normalized=True)
        k = int(np.argmin([m[0].distance(mid) for m in major]))
        _, hw, name, src = major[k]
        n = max(1, int(np.ceil(s.length / 150.0)))
        pts = [s.interpolate(i / n, normalized=True) for i in range(n + 1)]
        for a, b in zip(pts[:-1], pts[1:]):
            sub = _substring(s, a, b)
            edges.append((a.coords[0], b.coords[0], sub, hw, name, src))
    major_nodes_xy = np.array([e[0] for e in edges] + [e[1] for e in edges]).reshape(-1, 2)

    # local-street lattice
    corners = np.array([[X0b, Y0b], [X0b, Y1b], [X1b, Y0b], [X1b, Y1b]])
    Uc = (corners - centre) @ u_dir
    Vc = (corners - centre) @ v_dir
    I = np.arange(int(np.floor(Uc.min() / spacing)), int(np.ceil(Uc.max() / spacing)) + 1)
    J = np.arange(int(np.floor(Vc.min() / spacing)), int(np.ceil(Vc.max() / spacing)) + 1)
    II, JJ = np.meshgrid(I, J, indexing="ij")
    P = centre + spacing * (II[..., None] * u_dir + JJ[..., None] * v_dir)
    inside = ((P[..., 0] > X0b + 20) & (P[..., 0] < X1b - 20)
              & (P[..., 1] > Y0b + 20) & (P[..., 1] < Y1b - 20))
    cls = grid.sample(P.reshape(-1, 2)).reshape(P.shape[:2])
    node_ok = inside & ~np.isin(cls, (0, 1, 2))

    def _edge_ok(a, b):   # a, b: (n, 2) arrays of points
        good = np.ones(len(a), bool)
        for f in (0.25, 0.5, 0.75):
            c = grid.sample(a + f * (b - a))
            good &= ~np.isin(c, (0, 1, 2))
        return good

    for axis in (0, 1):
        if axis == 0:   # along U: (i, j) -> (i+1, j), kept where j % step == 0
            a_ok = node_ok[:-1, :] & node_ok[1:, :]
            A, B = P[:-1, :], P[1:, :]
            line_idx = JJ[:-1, :]
        else:
            a_ok = node_ok[:, :-1] & node_ok[:, 1:]
            A, B = P[:, :-1], P[:, 1:]
            line_idx = II[:, :-1]
        mid_cls = grid.sample(((A + B) / 2).reshape(-1, 2)).reshape(a_ok.shape)
        step = np.vectorize(lambda c: step_map.get(int(c), 0))(mid_cls)
        keep = a_ok & (step > 0) & (line_idx % np.maximum(step, 1) == 0)
        ia = np.argwhere(keep)
        a = A[keep]
        b = B[keep]
        ok = _edge_ok(a, b)
        for (pa, pb, c, li) in zip(a[ok], b[ok], mid_cls[keep][ok], line_idx[keep][ok]):
            if c in (3, 4):
                hw = "tertiary" if li % 6 == 0 else "residential"
            elif c == 6:
                hw = "track"
            else:
                hw = "unclassified"
            edges.append((tuple(pa), tuple(pb), None, hw, "", "synthetic"))
        del ia

    # connectors: each major-road node to the nearest lattice node within 100 m
    from scipy.spatial import cKDTree
    lat_nodes = P[node_ok]
    tree = cKDTree(lat_nodes)
    d, k = tree.query(major_nodes_xy)
    for pa, dd, kk in zip(major_nodes_xy, d, k):
        if 1.0 < dd < 100.0:
            pb = lat_nodes[kk]
            if _edge_ok(pa[None], pb[None])[0]:
                edges.append((tuple(pa), tuple(pb), None, "residential", "", "synthetic"))

    nodes, links = _edges_to_frames(edges, grid)
    nodes, links = _contract_degree2(nodes, links)
    return nodes, links


def _substring(line: LineString, a: Point, b: Point) -> LineString:
    from shapely.ops import substring
    return substring(line, line.project(a), line.project(b))


def _edges_to_frames(edges, grid):
    key = lambda p: (round(p[0], 1), round(p[1], 1))  # noqa: E731
    ids: dict = {}
    xy = []
    und = []
    seen = set()
    for pa, pb, geom, hw, name, src in edges:
        ka, kb = key(pa), key(pb)
        if ka == kb:
            continue
        for kk, p in ((ka, pa), (kb, pb)):
            if kk not in ids:
                ids[kk] = len(xy)
                xy.append(p)
        u, v = ids[ka], ids[kb]
        pair = (min(u, v), max(u, v), hw)
        if pair in seen:
            continue
        seen.add(pair)
        if geom is None:
            geom = LineString([pa, pb])
        und.append((u, v, geom, hw, name, src))
    xy = np.array(xy)
    nodes = pd.DataFrame({"id": np.arange(len(xy)), "x": xy[:, 0], "y": xy[:, 1]})
    und = pd.DataFrame(und, columns=["u", "v", "geometry", "highway", "name", "source"])
    return nodes, und


def _contract_degree2(nodes: pd.DataFrame, und: pd.DataFrame):
    """Merge chains through degree-2 nodes whose two edges share class, name and source."""
    import networkx as nx
    G = nx.MultiGraph()
    G.add_nodes_from(nodes["id"])
    for r in und.itertuples(index=False):
        G.add_edge(r.u, r.v, geometry=r.geometry, highway=r.highway, name=r.name, source=r.source)
    xy = nodes.set_index("id")[["x", "y"]]
    for n in list(G.nodes):
        if G.degree(n) != 2 or G.number_of_edges(n, n):
            continue
        (a, _, k1, d1), (b, _, k2, d2) = [(nb, n, k, d) for _, nb, k, d in G.edges(n, keys=True, data=True)]
        if a == b or a == n or b == n:
            continue
        if (d1["highway"], d1["name"], d1["source"]) != (d2["highway"], d2["name"], d2["source"]):
            continue
        if d1["source"] == "real":
            continue
        g1 = _oriented(d1["geometry"], xy.loc[a].to_numpy(), xy.loc[n].to_numpy())
        g2 = _oriented(d2["geometry"], xy.loc[n].to_numpy(), xy.loc[b].to_numpy())
        geom = LineString(list(g1.coords) + list(g2.coords)[1:])
        if geom.length > 1500:
            continue
        G.remove_node(n)
        G.add_edge(a, b, geometry=geom, highway=d1["highway"], name=d1["name"], source=d1["source"])
    keep = np.array(sorted(G.nodes))
    nodes = nodes.set_index("id").loc[keep].reset_index()
    und = pd.DataFrame([dict(u=u, v=v, **d) for u, v, d in G.edges(data=True)])
    return nodes, und


def _oriented(g: LineString, a, b) -> LineString:
    c = np.array(g.coords)
    if np.hypot(*(c[0] - a)) <= np.hypot(*(c[-1] - a)):
        return g
    return LineString(c[::-1])


def directed_links(nodes: pd.DataFrame, und: pd.DataFrame, grid_R: dict) -> pd.DataFrame:
    grid = _Grid(grid_R)
    xy = nodes.set_index("id")[["x", "y"]]
    rows = []
    for r in und.itertuples(index=False):
        lanes, kmh, cap = ROAD_CLASS_DEFAULTS[r.highway]
        g = _oriented(r.geometry, xy.loc[r.u].to_numpy(), xy.loc[r.v].to_numpy())
        mids = np.array([g.interpolate(f, normalized=True).coords[0] for f in (0.25, 0.5, 0.75)])
        bridge = bool(np.isin(grid.sample(mids), (1, 2)).any())
        base = dict(length_m=float(g.length), lanes=int(lanes), free_speed_mps=kmh / 3.6,
                    capacity_vph_per_lane=float(cap), jam_density_vpm_per_lane=JAM_DENSITY_PCU_PER_M,
                    highway=r.highway, name=r.name, oneway=False, bridge=bridge, source=r.source)
        rows.append({"from": int(r.u), "to": int(r.v), **base, "geometry": g})
        rows.append({"from": int(r.v), "to": int(r.u), **base, "geometry": g.reverse()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- wards
def ward_raster(R: dict) -> np.ndarray:
    """Ward code per 30 m cell from the real 2025 wards (twin.city.census), on land only (not the sea)."""
    from twin.city import census
    wards = census.real_wards(crs=f"EPSG:{synth.CRS_EPSG}")
    sea = R["landcover"] == 1
    return census.rasterize_wards(wards, R["landcover"].shape, R["transform"], land=~sea, sea=sea)


def ward_polygons(wr: np.ndarray, transform) -> pd.DataFrame:
    """The real 2025 wards (generalised legacy polygons dissolved; twin.city.census) as a GeoDataFrame."""
    from twin.city import census
    from twin.city.bundle import require_geopandas
    gpd = require_geopandas("ward polygons")
    wards = census.real_wards(crs=f"EPSG:{synth.CRS_EPSG}")
    for i, w in enumerate(WARDS, start=1):
        seed = synth.to_utm(np.array(w[1]))
        if w[0] != wards.loc[i - 1, "ward_name"] or not wards.loc[i - 1, "geometry"].contains(Point(seed)):
            raise ValueError(f"synth_city.WARDS: the seed of {w[0]!r} is not inside its real ward polygon")
    return gpd.GeoDataFrame(wards, geometry="geometry", crs=f"EPSG:{synth.CRS_EPSG}")


def population_table(wards_gdf, places: pd.DataFrame) -> pd.DataFrame:
    """Persons and households per ward from the census (twin.city.census), other shares synthetic."""
    from twin.city import census
    rows = []
    for i, (name, _, _persons, _hh, eld, chi, moto, car, storeys) in enumerate(WARDS, start=1):
        w = wards_gdf.loc[wards_gdf["ward"] == i].iloc[0]
        rows.append({"ward": i, "ward_name": name, "households": int(w["households"]), "persons": int(w["persons"]),
                     "share_elderly": eld, "share_children": chi, "share_motorbike": moto, "share_car": car,
                     "share_no_vehicle": round(1.0 - moto - car, 4), "mean_storeys": storeys,
                     "area_km2": float(w["area_km2"]),
                     "tourists": int(places.loc[(places["ward"] == i) & (places["kind"] == "hotel"), "tourists"].sum()),
                     "legacy_wards": str(w["legacy_names"]), "ward_code": str(w["ward_code"]),
                     "source": census.CENSUS_SOURCE + "; shares (elderly, children, vehicles, storeys) synthetic"})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- places
def build_places(R: dict, wr: np.ndarray, river_lines: dict, sources: dict, links: pd.DataFrame) -> pd.DataFrame:
    grid = _Grid(R)
    P: list[dict] = []

    def add(name, kind, xy, capacity=0, note="position synthetic", tourists=0):
        P.append({"name": name, "kind": kind, "x": float(xy[0]), "y": float(xy[1]), "capacity": int(capacity),
                  "tourists": int(tourists), "note": note})

    real_name = "real institution, position synthetic (approximate)"
    # hospitals (capacity = beds)
    add("Bệnh viện Đa khoa tỉnh Quảng Nam", "hospital", uv(0.6, -0.5), 700, real_name)
    add("Trung tâm Y tế thành phố Tam Kỳ", "hospital", uv(-0.9, 0.35), 150, real_name)
    add("Bệnh viện Sản – Nhi Quảng Nam", "hospital", uv(2.3, 1.1), 400, real_name)
    add("Bệnh viện Y học cổ truyền Quảng Nam", "hospital", uv(-1.4, -0.6), 150, real_name)
    # schools (capacity = shelter places, persons)
    for name, p, cap, note in [
        ("Trường THPT Chuyên Nguyễn Bỉnh Khiêm", (1.5, 2.9), 1200, real_name),
        ("Trường THPT Trần Cao Vân", (-0.5, 1.0), 1500, real_name),
        ("Trường THPT Phan Bội Châu", (1.0, -1.3), 1500, real_name),
        ("Trường THPT Duy Tân", (-2.3, -0.8), 1200, real_name),
        ("Trường Đại học Quảng Nam", (3.0, 3.2), 3000, real_name),
        ("Trường THCS Lý Tự Trọng", (-0.8, -1.5), 800, "synthetic"),
        ("Trường THCS Nguyễn Du", (-2.6, 2.5), 800, "synthetic"),
        ("Trường THCS Chu Văn An", (2.8, 0.4), 800, "synthetic"),
        ("Trường Tiểu học Kim Đồng", (-1.2, 2.0), 600, "synthetic"),
        ("Trường Tiểu học Lê Văn Tám", (0.9, 3.6), 600, "synthetic"),
        ("Trường Tiểu học Trần Quốc Toản", (-2.9, -1.6), 600, "synthetic"),
    ]:
        add(name, "school", uv(*p), cap, note)
    add("Trường Tiểu học Tam Thanh", "school", synth.to_utm(np.array((108.5455, 15.5990))), 400,
        "synthetic; in the real Tam Thanh commune, position approximate")
    # shelters and public buildings
    add("Trung tâm Hành chính tỉnh (cũ)", "public_building", uv(1.2, 2.65), 2000, real_name)
    add("Nhà thi đấu đa năng Tam Kỳ", "shelter", uv(1.8, 0.3), 2500, "synthetic")
    add("Nhà Văn hóa Lao động", "public_building", uv(0.3, 0.8), 600, "synthetic")
    for (wname, seed, *_rest) in WARDS:
        add(f"UBND phường {wname}", "public_building", synth.to_utm(np.array(seed)) + np.array([60.0, 40.0]), 300,
            "synthetic")
    # hotels (capacity = beds; tourists = guests on a typical night, 60 % occupancy)
    for name, xy, beds, note in [
        ("Khách sạn Mường Thanh Grand Quảng Nam", uv(0.2, 0.9), 360, real_name),
        ("Khách sạn Phú Ninh", uv(-0.5, 0.4), 120, "synthetic"),
        ("Khách sạn Sông Tam Kỳ", uv(0.9, -1.0), 80, "synthetic"),
        ("Tam Thanh Beach Resort", synth.to_utm(np.array((108.5483, 15.6028))), 160,
         "synthetic; on the Tam Thanh coast, position approximate"),
        ("Khách sạn Biển Tam Thanh", synth.to_utm(np.array((108.5525, 15.5985))), 80,
         "synthetic; on the Tam Thanh coast, position approximate"),
        ("Homestay Làng bích họa Tam Thanh", synth.to_utm(np.array((108.5469, 15.6014))), 30,
         "Tam Thanh mural village (thôn Trung Thanh) is real; homestay synthetic, position approximate"),
    ]:
        add(name, "hotel", xy, beds, note, tourists=int(round(0.6 * beds)))
    # industry and tourism (the seed's other services in the exposure; capacity = workers on a shift for an
    # industrial zone, visitors on a typical day for a tourism site: orders of magnitude, synthetic)
    add("Khu công nghiệp Tam Thăng", "industrial_zone", synth.to_utm(np.array((108.4699, 15.6135))), 15000,
        "real industrial park (Tam Thăng, along QL1A); position approximate, workers synthetic")
    add("Cụm công nghiệp Thuận Yên", "industrial_zone", synth.to_utm(np.array((108.4560, 15.5700))), 5000,
        "real industrial cluster (Hòa Thuận); position approximate, workers synthetic")
    add("Bãi biển Tam Thanh", "tourism", synth.to_utm(np.array((108.5535, 15.6015))), 2000,
        "real beach; position approximate, visitors synthetic")
    add("Làng bích họa Tam Thanh", "tourism", synth.to_utm(np.array((108.5490, 15.5995))), 500,
        "real mural village (thôn Trung Thanh, Tam Thanh); position approximate, visitors synthetic")
    add("Công viên ven sông Bàn Thạch", "tourism", _bank_point(river_lines["Sông Bàn Thạch"], 0.58, grid, 60.0), 800,
        "Bàn Thạch riverside (real area); position on the synthetic river, visitors synthetic")
    # emergency services
    add("Phòng Cảnh sát PCCC và CNCH – Công an tỉnh", "fire_station", uv(-1.2, 1.4), 0, real_name)
    add("Đội PCCC và CNCH khu vực Tam Thanh", "fire_station", synth.to_utm(np.array((108.5452, 15.5970))), 0,
        "synthetic")
    add("Công an thành phố Tam Kỳ", "police", uv(0.8, 1.5), 0, "synthetic")
    for (wname, seed, *_rest) in WARDS:
        add(f"Công an phường {wname}", "police", synth.to_utm(np.array(seed)) + np.array([-70.0, -50.0]), 0, "synthetic")
    add("Trung tâm Cấp cứu 115 / Chỉ huy điều hành", "dispatch", uv(0.45, -0.35), 0, "synthetic")
    # pumping stations: on the river banks inside the city
    for name, river, frac in [("Trạm bơm tiêu An Phú", "Sông Tam Kỳ", 0.45), ("Trạm bơm tiêu Trường Xuân", "Sông Tam Kỳ", 0.32),
                              ("Trạm bơm tiêu Bàn Thạch", "Sông Bàn Thạch", 0.55), ("Trạm bơm tiêu Hòa Hương", "Sông Bàn Thạch", 0.68)]:
        add(name, "pumping_station", _bank_point(river_lines[river], frac, grid, 90.0), 3, "synthetic; capacity m³/s")
    # gauges
    add("Trạm thủy văn Tam Kỳ (sông Tam Kỳ)", "gauge_stage", _bank_point(river_lines["Sông Tam Kỳ"], 0.40, grid, 0.0), 0,
        "synthetic position on the Tam Kỳ river")
    add("Trạm đo mực nước sông Bàn Thạch", "gauge_stage", _bank_point(river_lines["Sông Bàn Thạch"], 0.60, grid, 0.0), 0,
        "synthetic")
    add("Trạm đo mực nước hồ Phú Ninh", "gauge_stage", synth.to_utm(np.array((108.4500, 15.5120))), 0,
        "reservoir level at the dam; position approximate")
    for name, ll in [("Trạm đo mưa Tam Kỳ", (108.4760, 15.5730)), ("Trạm đo mưa Phú Ninh", (108.4450, 15.5200)),
                     ("Trạm đo mưa Tam Thanh", (108.5470, 15.6000)), ("Trạm đo mưa Hương Trà", (108.5100, 15.5600)),
                     ("Trạm đo mưa Bàn Thạch", (108.4700, 15.6050))]:
        add(name, "gauge_rain", synth.to_utm(np.array(ll)), 0, "synthetic")
    tg = np.vstack(sources["rivers"])
    inside = (tg[:, 0] < synth.X1 - 100) & (tg[:, 1] > synth.Y0 + 100)
    south = tg[inside][np.argmin(tg[inside][:, 1])]
    add("Trạm đo triều cửa An Hòa", "gauge_tide", south, 0,
        "at the southern end of the Trường Giang toward the An Hòa estuary; synthetic position")

    df = pd.DataFrame(P)
    # buildings stand on land: move any non-gauge place that fell on water to the nearest land cell
    from scipy import ndimage
    wet = np.isin(R["landcover"], (0, 1, 2))
    _, (ri, ci) = ndimage.distance_transform_edt(wet, return_indices=True)
    t = R["transform"]
    for i in df.index:
        if df.at[i, "kind"].startswith("gauge"):
            continue
        r0 = int((t.f - df.at[i, "y"]) // t.a)
        c0 = int((df.at[i, "x"] - t.c) // t.a)
        if wet[r0, c0]:
            r1, c1 = ri[r0, c0], ci[r0, c0]
            df.at[i, "x"] = t.c + (c1 + 0.5) * t.a
            df.at[i, "y"] = t.f - (r1 + 0.5) * t.a
    df.insert(0, "place_id", np.arange(len(df)))
    r = np.floor((synth.Y1 - df["y"]) / R["transform"].a).astype(int).clip(0, wr.shape[0] - 1)
    c = np.floor((df["x"] - synth.X0) / R["transform"].a).astype(int).clip(0, wr.shape[1] - 1)
    names = {i: w[0] for i, w in enumerate(WARDS, start=1)}
    df["ward"] = wr[r, c].astype(int)                       # ward code as in ward_raster (0 = outside)
    df["ward_name"] = [names.get(int(v), "") for v in wr[r, c]]
    ll = synth.to_lonlat(df[["x", "y"]].to_numpy())
    df["lon"] = ll[:, 0].round(6)
    df["lat"] = ll[:, 1].round(6)
    df["source"] = "synthetic"
    return df


def _bank_point(line: np.ndarray, frac: float, grid: _Grid, offset: float) -> np.ndarray:
    g = LineString(line)
    p = np.array(g.interpolate(frac, normalized=True).coords[0])
    if offset <= 0:
        return p
    q = np.array(g.interpolate(min(frac + 0.01, 1.0), normalized=True).coords[0])
    t = (q - p) / max(np.linalg.norm(q - p), 1e-9)
    n = np.array([-t[1], t[0]])
    for k in range(1, 8):
        cand = p + n * offset * k / 2
        if grid.sample(cand)[0] not in (1, 2):
            return cand
    return p + n * offset


# ----------------------------------------------------------------------------- inflows
def build_inflows(R: dict, river_lines: dict, sources: dict) -> pd.DataFrame:
    tk = river_lines["Sông Tam Kỳ"]
    bt = river_lines["Sông Bàn Thạch"]
    dam = synth.to_utm(np.array(synth.DAM_LONLAT)).mean(0)
    g = LineString(tk)
    rel = np.array(g.interpolate(g.project(Point(dam)) + 120.0).coords[0])
    tg = np.vstack(sources["rivers"])
    inside = (tg[:, 0] > synth.X0) & (tg[:, 0] < synth.X1) & (tg[:, 1] > synth.Y0) & (tg[:, 1] < synth.Y1)
    north = tg[inside][np.argmax(tg[inside][:, 1])]
    bt_in = bt[(bt[:, 0] > synth.X0 + 30)][0]
    rows = [
        {"name": "Xả tràn hồ Phú Ninh (sông Tam Kỳ)", "kind": "reservoir_release", "x": rel[0], "y": rel[1],
         "q_design_m3_per_s": 1053.0 + 853.0, "catchment_km2": 235.0,
         "note": "Phú Ninh spillways 1,053 + 853 m³/s; release enters the Tam Kỳ river below the dam"},
        {"name": "Sông Bàn Thạch (thượng nguồn)", "kind": "river_inflow", "x": bt_in[0], "y": bt_in[1],
         "q_design_m3_per_s": float("nan"), "catchment_km2": float("nan"),
         "note": "upstream end of the Bàn Thạch river at the domain edge; hydrograph from the scenario"},
        {"name": "Trường Giang (phía bắc)", "kind": "river_inflow", "x": north[0], "y": north[1],
         "q_design_m3_per_s": float("nan"), "catchment_km2": float("nan"),
         "note": "Trường Giang lagoon-river at the northern domain edge (real WDBII course)"},
    ]
    return pd.DataFrame(rows)
