"""Road readers (twin.roads.readers, through RoadNetwork.from_*) on real files (pyrosm's OSM extracts,
the national road GeoJSON) and their error paths."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest

from twin import roads
from twin.roads import RoadDataError, RoadNetwork

pyrosm = pytest.importorskip("pyrosm")
PBF = Path(pyrosm.__file__).parent / "data" / "test.osm.pbf"
PRUNED = r"road graph is not strongly connected \(\d+ components\); kept the largest"   # pyrosm's test extract
NATIONAL = Path(__file__).resolve().parents[2] / "twin" / "data" / "tamky" / "sources" / \
    "vn_national_roads_rail_quangnam_region.geojson"


def _strongly_connected(net) -> bool:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    n = net.n_nodes
    g = coo_matrix((np.ones(net.n_links), (net.links["from"], net.links["to"])), shape=(n, n))
    return connected_components(g, directed=True, connection="strong")[0] == 1


# ----------------------------------------------------------------------------- tag parsing
@pytest.mark.parametrize("tag,kmh", [("50", 50.0), ("50 km/h", 50.0), ("30 mph", 48.28032), ("VN:urban", 50.0),
                                     ("VN:rural", 80.0), (["60", "40"], 60.0), ("none", 90.0), ("fast", None),
                                     (None, None), (float("nan"), None)])
def test_parse_maxspeed(tag, kmh):
    got = roads.parse_maxspeed_kmh(tag)
    assert (got is None and kmh is None) or got == pytest.approx(kmh)


def test_link_attributes_defaults_and_tags():
    # trunk default: 2 lanes per direction, 60 km/h
    lanes, v, cap = roads.link_attributes("trunk")
    assert (lanes, v * 3.6, cap) == (2, pytest.approx(60.0), 1800.0)
    # 4 lanes total two-way -> 2 per direction; one-way 3 lanes -> 3
    assert roads.link_attributes("primary", "4", "40", 0)[:2] == (2, pytest.approx(40 / 3.6))
    assert roads.link_attributes("primary", "3", None, 1)[0] == 3
    assert roads.link_attributes("residential")[1] * 3.6 == pytest.approx(25.0)
    assert roads.link_attributes("trunk_link")[0] == 2
    assert roads.parse_oneway(None, "primary", "roundabout") == 1
    assert roads.parse_oneway("-1") == -1 and roads.parse_oneway("no", "motorway") == 0


# ----------------------------------------------------------------------------- OSM PBF (real)
def test_read_osm_pbf_real_extract():
    with pytest.warns(UserWarning, match=PRUNED):
        net = RoadNetwork.from_osm(PBF, crs="EPSG:32635")   # the extract is in Finland: UTM 35N keeps lengths true
    L = net.links
    assert net.n_links > 500 and net.n_nodes > 300
    assert _strongly_connected(net)
    for col in ("length_m", "lanes", "free_speed_mps", "capacity_vph_per_lane", "jam_density_vpm_per_lane"):
        assert (L[col] > 0).all(), col
    # geodesic length vs the projected geometry in the right UTM zone: within 0.5 % on every long link
    glen = np.array([g.length for g in L["geometry"]])
    long = L["length_m"] > 50
    assert np.allclose(glen[long], L.loc[long, "length_m"], rtol=5e-3)
    # tags were used: secondary roads tagged maxspeed=80 and lanes=2 in this extract
    sec = L[L["highway"] == "secondary"]
    assert len(sec) and (sec["free_speed_mps"] * 3.6).round().eq(80).any()
    assert set(L["source"]) == {"real"}
    # link endpoints coincide with node coordinates
    xy = net.nodes.set_index("id")[["x", "y"]]
    g0 = L["geometry"].iloc[0]
    assert np.allclose(g0.coords[0], xy.loc[L["from"].iloc[0]].to_numpy(), atol=1.0)


def test_read_osm_pbf_empty_bbox_is_a_clear_error():
    with pytest.raises(RoadDataError, match="empty extract"):
        roads.read_osm(PBF, bbox=(108.0, 15.0, 108.01, 15.01))


def _pbf_as_osm_xml(path: Path) -> Path:
    """Re-serialise the real PBF extract's drivable ways as OSM XML (one way per edge)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes, edges = pyrosm.OSM(str(PBF)).get_network("driving", nodes=True)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test">']
    used = set(edges["u"]) | set(edges["v"])
    for r in nodes[nodes["id"].isin(used)].itertuples():
        lines.append(f'<node id="{r.id}" version="1" lat="{r.lat:.7f}" lon="{r.lon:.7f}"/>')
    for i, e in enumerate(edges.itertuples(), start=1):
        tags = {"highway": e.highway, "lanes": e.lanes, "maxspeed": e.maxspeed, "oneway": e.oneway}
        lines.append(f'<way id="{i}" version="1"><nd ref="{e.u}"/><nd ref="{e.v}"/>')
        for k, v in tags.items():
            if isinstance(v, str) and v:
                lines.append(f"<tag k=\"{k}\" v={quoteattr(v)}/>")
        lines.append("</way>")
    lines.append("</osm>")
    path.write_text("\n".join(lines))
    return path


def test_read_osm_xml_matches_pbf(tmp_path):
    xml = _pbf_as_osm_xml(tmp_path / "test.osm")
    with pytest.warns(UserWarning, match=PRUNED):
        a = RoadNetwork.from_osm(PBF, crs="EPSG:32635")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        b = RoadNetwork.from_osm(xml, crs="EPSG:32635")
    assert _strongly_connected(b)
    # same drivable road length within 3 % (osmnx simplification and component repair differ slightly)
    assert b.links["length_m"].sum() == pytest.approx(a.links["length_m"].sum(), rel=0.03)


# ----------------------------------------------------------------------------- GeoJSON (real national layer)
def test_read_geojson_real_national_roads():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        net = RoadNetwork.from_geojson(NATIONAL)
    assert net.n_links > 50
    assert _strongly_connected(net)
    ql1a = net.links[net.links["name"] == "Quốc lộ 1A"]
    assert len(ql1a) > 10
    # every link length equals its EPSG:32649 geometry length
    assert np.allclose([g.length for g in net.links["geometry"]], net.links["length_m"])
    # the layer is a skeleton of separate pieces: repair reports what it cut
    assert any("kept the largest" in str(x.message) for x in w)


def _fc(features, crs=None):
    d = {"type": "FeatureCollection", "features": features}
    if crs:
        d["crs"] = {"type": "name", "properties": {"name": crs}}
    return d


def _line(coords, **props):
    return {"type": "Feature", "properties": props, "geometry": {"type": "LineString", "coordinates": coords}}


def test_geojson_disconnected_graph_repaired_with_warning(tmp_path):
    # a triangle of streets near Tam Kỳ plus a separate 2-node island 3 km away
    tri = [[108.470, 15.570], [108.480, 15.570], [108.475, 15.578], [108.470, 15.570]]
    feats = [_line(tri, highway="residential", name="Đường A"),
             _line([[108.50, 15.57], [108.505, 15.57]], highway="residential", name="Đảo")]
    p = tmp_path / "roads.geojson"
    p.write_text(json.dumps(_fc(feats)))
    with pytest.warns(UserWarning, match=r"kept the largest: 3 of 5 nodes"):
        net = RoadNetwork.from_geojson(p)
    assert net.n_nodes == 3 and net.n_links == 6   # three two-way links
    with pytest.raises(RoadDataError, match="not strongly connected"):
        roads.read_geojson(p, repair="error")
    # the reader itself returns the two frames: ids renumbered 0..N-1, the file's id in orig_id
    with pytest.warns(UserWarning, match="kept the largest"):
        nodes, links = roads.read_geojson(p)
    assert list(nodes["id"]) == [0, 1, 2] and "orig_id" in nodes
    assert sorted(set(links["from"]) | set(links["to"])) == [0, 1, 2] and len(links) == 6
    assert set(links["name"]) == {"Đường A"}


def test_geojson_wrong_crs_and_empty(tmp_path):
    p = tmp_path / "utm_without_crs.geojson"   # UTM metres written as if WGS84
    p.write_text(json.dumps(_fc([_line([[229000.0, 1723000.0], [229500.0, 1723000.0]], highway="primary")])))
    with pytest.raises(RoadDataError, match="wrong CRS"):
        roads.read_geojson(p)
    e = tmp_path / "empty.geojson"
    e.write_text(json.dumps(_fc([])))
    with pytest.raises(RoadDataError, match="empty"):
        roads.read_geojson(e)
    # the same UTM file with its CRS declared is reprojected correctly
    q = tmp_path / "utm_with_crs.geojson"
    q.write_text(json.dumps(_fc([_line([[229000.0, 1723000.0], [229500.0, 1723000.0]], highway="primary", oneway="no")],
                                crs="urn:ogc:def:crs:EPSG::32649")))
    net = RoadNetwork.from_geojson(q)
    assert net.n_links == 2 and net.links["length_m"].iloc[0] == pytest.approx(500.0, abs=1e-6)


# ----------------------------------------------------------------------------- GraphML
def test_graphml_roundtrip_and_osmnx_format(tmp_path):
    import osmnx as ox
    with pytest.warns(UserWarning, match=PRUNED):
        net = RoadNetwork.from_osm(PBF, crs="EPSG:32635")
    p = roads.write_graphml(net, tmp_path / "net.graphml", crs="EPSG:32635")
    back = RoadNetwork.from_graphml(p, crs="EPSG:32635")
    assert back.n_links == net.n_links and back.n_nodes == net.n_nodes
    assert back.links["length_m"].sum() == pytest.approx(net.links["length_m"].sum(), rel=1e-9)
    assert np.allclose(np.sort(back.links["free_speed_mps"]), np.sort(net.links["free_speed_mps"]))
    # an osmnx-written GraphML (lon/lat nodes, WKT geometries, OSM tags)
    xml = _pbf_as_osm_xml(tmp_path / "t.osm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G = ox.graph_from_xml(str(xml), bidirectional=False, simplify=True, retain_all=False)
    gp = tmp_path / "osmnx.graphml"
    ox.save_graphml(G, gp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net2 = RoadNetwork.from_graphml(gp, crs="EPSG:32635")
    assert _strongly_connected(net2)
    import networkx as nx
    scc = G.subgraph(max(nx.strongly_connected_components(G), key=len))
    assert net2.n_links == scc.number_of_edges()
    assert net2.links["length_m"].sum() == pytest.approx(sum(d["length"] for *_, d in scc.edges(data=True)), rel=1e-6)


def test_graphml_missing_coordinates(tmp_path):
    import networkx as nx
    G = nx.DiGraph()
    G.add_edge("a", "b")
    p = tmp_path / "bad.graphml"
    nx.write_graphml(G, p)
    with pytest.raises(RoadDataError, match="'x'"):
        roads.read_graphml(p)
