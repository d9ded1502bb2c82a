"""RoadNetwork: frames, defaults, validation, CSR adjacency, nearest node, SCC pruning."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString

from twin.roads import RoadNetwork, default_capacity_vph_per_lane


def frames():
    nodes = pd.DataFrame({"id": [10, 11, 12, 13], "x": [0.0, 100.0, 100.0, 500.0], "y": [0.0, 0.0, 100.0, 0.0]})
    links = pd.DataFrame({"from": [10, 11, 12, 11], "to": [11, 12, 10, 13], "length_m": [100.0, 100.0, 150.0, 400.0],
                          "lanes": [1, 2, 1, 1], "free_speed_mps": [50 / 3.6] * 4})
    return nodes, links


def test_from_frames_defaults_and_geometry():
    net = RoadNetwork.from_frames(*frames())
    assert net.n_nodes == 4 and net.n_links == 4
    assert list(net.links.index) == [0, 1, 2, 3]
    # capacity from tau = 1 s, k_j = 1/7.5: 2,338 veh/h/lane at 50 km/h
    assert net.links["capacity_vph_per_lane"].iloc[0] == pytest.approx(2337.66, abs=0.01)
    assert default_capacity_vph_per_lane(50 / 3.6) == pytest.approx(2337.66, abs=0.01)
    assert net.links["jam_density_vpm_per_lane"].iloc[0] == pytest.approx(1 / 7.5)
    g = net.links["geometry"].iloc[0]
    assert isinstance(g, LineString) and list(g.coords) == [(0.0, 0.0), (100.0, 0.0)]
    assert set(net.links["source"]) == {"real"}
    assert (net.links["signal_group"] == -1).all()


def test_given_geometry_and_source_are_kept():
    nodes, links = frames()
    curve = LineString([(0, 0), (50, 20), (100, 0)])
    links["geometry"] = [curve, None, None, None]
    links["source"] = ["real", "synthetic", "synthetic", "real"]
    net = RoadNetwork.from_frames(nodes, links)
    assert net.links["geometry"].iloc[0].equals(curve)
    assert list(net.links["source"]) == ["real", "synthetic", "synthetic", "real"]


@pytest.mark.parametrize("mutate, match", [
    (lambda n, l: l.drop(columns="lanes"), "lanes"),
    (lambda n, l: l.assign(length_m=[100.0, -1.0, 150.0, 400.0]), r"length_m: value -1.0 in row 1"),
    (lambda n, l: l.assign(to=[11, 12, 10, 99]), "99"),
    (lambda n, l: l.assign(free_speed_mps=[np.nan, 1, 1, 1]), "free_speed_mps"),
    (lambda n, l: l.assign(capacity_vph_per_lane=[9000.0, np.nan, np.nan, np.nan]), "capacity_vph_per_lane"),
    (lambda n, l: l.assign(source=["real", "guess", "real", "real"]), "guess"),
    (lambda n, l: l.assign(signal_group=[0, -1, -1, -1]), "signal_group"),
])
def test_errors_name_the_field(mutate, match):
    nodes, links = frames()
    links = mutate(nodes, links)
    with pytest.raises(ValueError, match=match):
        RoadNetwork.from_frames(nodes, links)


def test_duplicate_node_ids_rejected():
    nodes, links = frames()
    nodes.loc[1, "id"] = 10
    with pytest.raises(ValueError, match="duplicate"):
        RoadNetwork.from_frames(nodes, links)


def test_csr_and_nearest_node():
    net = RoadNetwork.from_frames(*frames())
    ptr, out = net.csr_out()
    assert list(ptr) == [0, 1, 3, 4, 4]
    assert sorted(out[ptr[1]:ptr[2]]) == [1, 3]
    ptr_in, inn = net.csr_in()
    assert list(inn[ptr_in[0]:ptr_in[1]]) == [2]
    assert net.nearest_node(90.0, 5.0) == 11
    assert list(net.nearest_node([0.0, 480.0], [1.0, 0.0])) == [10, 13]


def test_largest_strongly_connected_warns_and_cuts():
    net = RoadNetwork.from_frames(*frames())  # node 13 is a dead end
    with pytest.warns(UserWarning, match=r"removed 1 nodes .* 1 links"):
        scc = net.largest_strongly_connected()
    assert scc.n_nodes == 3 and scc.n_links == 3
    assert set(scc.nodes["id"]) == {10, 11, 12}
    assert list(scc.links.index) == [0, 1, 2]


def test_signal_phases_parsed():
    nodes, links = frames()
    nodes["signal_phases_s"] = [(30.0, 30.0), None, "20;40", np.nan]
    links["signal_group"] = [-1, 1, 0, -1]
    net = RoadNetwork.from_frames(nodes, links)
    assert net.nodes["signal_phases_s"].tolist() == [(30.0, 30.0), (), (20.0, 40.0), ()]


def test_string_node_ids_work_end_to_end():
    from twin.traffic import TrafficModel

    nodes = pd.DataFrame({"id": ["a", "b", "c"], "x": [0.0, 300.0, 600.0], "y": [0.0, 0.0, 0.0]})
    links = pd.DataFrame({"from": ["a", "b", "b", "c"], "to": ["b", "c", "a", "b"], "length_m": 300.0,
                          "lanes": 1, "free_speed_mps": 10.0})
    net = RoadNetwork.from_frames(nodes, links).largest_strongly_connected()
    tm = TrafficModel(net)
    tm.add_trips(pd.DataFrame({"origin": ["a"], "destination": ["c"], "depart_s": [0.0]}))
    tm.run_one_step(100)
    tr = tm.trips
    assert tr.destination.iloc[0] == "c" and tr.travel_time_s.iloc[0] == pytest.approx(60.0)
    nodes_path, links_path, t = tm.shortest_path("c", "a")
    assert nodes_path == ["c", "b", "a"] and t == pytest.approx(60.0)
    assert net.nearest_node(550.0, 3.0) == "c"


def test_reader_classmethods_delegate_to_readers(tmp_path):
    """from_graphml goes through twin.roads.readers (frames) and gives a network that drives."""
    from twin.roads import read_graphml, write_graphml
    from twin.traffic import TrafficModel

    net = RoadNetwork.grid(3, origin=(500_000.0, 1_700_000.0))
    path = write_graphml(net, tmp_path / "grid.graphml")
    back = RoadNetwork.from_graphml(path)
    assert isinstance(back, RoadNetwork) and back.n_nodes == 9 and back.n_links == net.n_links
    nodes, links = read_graphml(path)              # the reader alone: frames, no network
    assert isinstance(nodes, pd.DataFrame) and isinstance(links, pd.DataFrame)
    assert links[["from", "to", "length_m"]].equals(back.links[["from", "to", "length_m"]])
    assert np.allclose(sorted(back.links.length_m), sorted(net.links.length_m))
    tm = TrafficModel(back)
    a, b = back.nearest_node(500_000.0, 1_700_000.0), back.nearest_node(500_600.0, 1_700_600.0)
    tm.add_trips(pd.DataFrame({"origin": [a], "destination": [b], "depart_s": [0.0]}))
    tm.run_one_step(300)
    assert tm.trips.travel_time_s.iloc[0] == pytest.approx(4 * 300 / (50 / 3.6), rel=1e-6)


def test_one_pruning_for_networks_and_readers():
    """The network method and the readers' repair share one pruning: same nodes, links and warning."""
    from twin.roads import RoadDataError, largest_strongly_connected, repair_connectivity

    nodes, links = frames()  # node 13 is a dead end
    with pytest.warns(UserWarning, match=r"kept the largest: 3 of 4 nodes .* removed 1 nodes and 1 links"):
        n2, l2 = largest_strongly_connected(nodes, links, what="test roads")
    with pytest.warns(UserWarning, match=r"RoadNetwork.largest_strongly_connected: .* kept the largest: 3 of 4"):
        scc = RoadNetwork.from_frames(nodes, links).largest_strongly_connected()
    assert list(n2["id"]) == list(scc.nodes["id"]) == [10, 11, 12]
    assert l2[["from", "to"]].equals(scc.links[["from", "to"]].reset_index(drop=True))
    with pytest.warns(UserWarning, match="test roads"):
        n3, l3 = repair_connectivity(nodes, links, path="test roads")
    assert list(n3["id"]) == [0, 1, 2] and list(n3["orig_id"]) == [10, 11, 12]
    assert list(zip(l3["from"], l3["to"])) == [(n3["orig_id"].tolist().index(a), n3["orig_id"].tolist().index(b))
                                               for a, b in zip(l2["from"], l2["to"])]
    with pytest.raises(RoadDataError, match="test roads: road graph is not strongly connected"):
        largest_strongly_connected(nodes, links, what="test roads", repair="error")
    bad = links.copy()
    bad.loc[0, "to"] = 99
    with pytest.raises(RoadDataError, match="unknown nodes .*99"):
        largest_strongly_connected(nodes, bad, what="test roads")
    # a strongly connected network comes back as itself, without a warning
    ok = scc.largest_strongly_connected()
    assert ok is scc


def test_old_import_paths_still_work():
    """twin.roads is a package; the names callers used before the split still import from it."""
    import twin
    from twin.roads import (  # noqa: F401
        DEFAULT_JAM_DENSITY_VPM_PER_LANE,
        JAM_DENSITY_PCU_PER_M,
        ROAD_CLASS_DEFAULTS,
        read_geojson,
        read_osm,
        write_graphml,
    )

    assert twin.RoadNetwork is RoadNetwork
    assert RoadNetwork.__module__ == "twin.roads.network"
