"""Units are drawn where they are: along their route while they move, timed by the travel times the
dispatcher used (``EmergencyServices.positions_at``, ``units.parquet``)."""
from __future__ import annotations

import math

import numpy as np

from twin.agents import EmergencyServices

from .helpers import X0, Y0


def _services(city, **params):
    base = {"ambulances_per_hospital": 0, "fire_trucks_per_station": 0, "n_boats": 0,
            "medical_rate_per_1000_per_day": 0.0}
    return EmergencyServices(city, {**base, **params}, np.random.default_rng(0))


def _track(es, uid, step=30.0, horizon=4 * 3600.0):
    """(t, x, y) of unit ``uid`` at every ``step`` until it stops moving."""
    out = []
    t_end = es.time_s + horizon
    while es.time_s < t_end:
        es.run_one_step(step)
        x, y = es.positions_at(es.time_s)
        out.append((es.time_s, float(x[uid]), float(y[uid])))
        if es.units[uid].phase == "idle":
            break
    return np.array(out)


def test_a_boat_is_seen_crossing_the_water(city):
    es = _services(city, n_boats=1)
    depth = np.zeros(city.terrain.shape)
    depth[:, 20:] = 2.0                              # the eastern two thirds under 2 m of water
    es.set_flood(depth)
    es.run_one_step(60.0)
    boat = next(u for u in es.units if u.kind == "boat")
    x0, y0 = boat.x, boat.y
    goal = (X0 + 1650.0, Y0 - 900.0)
    msg = es.dispatch_unit(boat.uid, ("place", *goal))
    eta = float(msg.rsplit("eta ", 1)[1].split()[0])
    assert eta > 300                                 # a crossing of several records
    track = _track(es, boat.uid)
    moving = track[track[:, 0] < 60.0 + eta - 1]
    assert len(moving) >= 5
    d_goal = np.hypot(moving[:, 1] - goal[0], moving[:, 2] - goal[1])
    # strictly closer to the goal at every record, never where it started, never yet at the goal
    assert np.all(np.diff(d_goal) < 0)
    assert np.all(np.hypot(moving[:, 1] - x0, moving[:, 2] - y0) > 1.0) and np.all(d_goal > 1.0)
    # never faster than a boat can go (2.5 m/s on water, 4 m/s on its trailer), diagonal steps included
    v = np.hypot(np.diff(track[:, 1]), np.diff(track[:, 2])) / np.diff(track[:, 0])
    assert v.max() <= 4.0 * math.sqrt(2) * 1.001
    # half-way in time is near half-way in space (the route is nearly straight here)
    mid = np.interp(60.0 + eta / 2, track[:, 0], np.hypot(track[:, 1] - goal[0], track[:, 2] - goal[1]))
    full = math.hypot(goal[0] - x0, goal[1] - y0)
    assert 0.25 * full < mid < 0.75 * full
    # arrived: exactly at the goal, and it stays there
    assert es.units[boat.uid].phase == "idle"
    assert (track[-1, 1], track[-1, 2]) == goal
    xs, ys = es.positions_at(es.time_s + 600.0)
    assert (xs[boat.uid], ys[boat.uid]) == goal


def _on_a_link(graph, x, y, tol=1e-6):
    ax, ay = graph.node_x[graph.link_from], graph.node_y[graph.link_from]
    bx, by = graph.node_x[graph.link_to], graph.node_y[graph.link_to]
    dx, dy = bx - ax, by - ay
    s = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return float(np.min(np.hypot(ax + s * dx - x, ay + s * dy - y))) < tol


def test_an_ambulance_is_drawn_along_its_road_route(city):
    es = _services(city, ambulances_per_hospital=1)
    es.run_one_step(60.0)
    amb = es.units[0]
    goal = (X0 + 1575.0, Y0 - 1275.0)               # a road node far from the hospital
    es.dispatch_unit(amb.uid, ("place", *goal))
    route_t = list(amb.path_t)
    assert len(route_t) > 5                          # through the road nodes, not one hop
    track = _track(es, amb.uid, step=20.0)
    between = track[(track[:, 0] > route_t[1]) & (track[:, 0] < route_t[-2])]
    assert len(between) >= 5
    assert all(_on_a_link(es.graph, x, y) for _, x, y in between)   # on the roads, not across blocks
    assert len({(x, y) for _, x, y in between}) == len(between)     # moving at every record
    assert (track[-1, 1], track[-1, 2]) == goal


def test_a_restart_keeps_the_route(city):
    """The route is part of the unit's state: a restored services model draws the same positions."""
    es = _services(city, n_boats=1)
    depth = np.zeros(city.terrain.shape)
    depth[:, 20:] = 2.0
    es.set_flood(depth)
    es.run_one_step(60.0)
    es.dispatch_unit(es.units[0].uid, ("place", X0 + 1650.0, Y0 - 900.0))
    es.run_one_step(120.0)
    st = es.get_state()
    other = _services(city, n_boats=1)
    other.set_state(st)
    for t in (200.0, 400.0, 900.0):
        assert np.array_equal(np.column_stack(es.positions_at(t)), np.column_stack(other.positions_at(t)))
