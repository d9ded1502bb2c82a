"""Flood impact on road links: speed from standing water depth and stall depths by class.

The one place where water depth becomes road speed and closures: :func:`link_flood_arrays` gives
the per-link flooded free speeds and the per-link × class closure mask that the C++ traffic engine
consumes (``set_link_speeds``, ``set_closed``); the engine holds no flood physics. (The engine
takes speeds, not speed factors: ``vfree × (v / vfree)`` is not always ``v`` in floating point, and
the speeds keep every result bit-identical to the engine that computed the curve itself.)

Speed: Pregnolato, Ford, Wilkinson & Dawson (2017), "The impact of flooding on road transport: a
depth-disruption function", Transportation Research Part D 55, 67-81, eq. (4):

    v(w) = 0.0009 w^2 - 0.5529 w + 86.9448   [km/h], w = water depth in mm,

fitted for 0 <= w <= 300 mm (at 300 mm a car cannot pass). The parabola has its minimum, about
2 km/h, at w = 307 mm; deeper water keeps that crawl speed for the classes still able to move
(the quadratic would rise again beyond). The link's own speed limit caps the result, so shallow
water on a 50 km/h street changes nothing until the curve drops below 50 km/h (w > about 80 mm).
The capacity follows the triangular diagram with the reduced free speed (same jam density and
backward wave speed).

Stall depths (a link is closed to a class when depth >= its stall depth; the values are defaults and
can be changed per model with ``TrafficModel(..., stall_depth_m={...})``):

=========== ======= ===========================================================================
class       depth   basis
=========== ======= ===========================================================================
motorbike   0.15 m  exhaust and air intake of the 100-125 cc scooters common in Vietnam sit at
                    about 0.2-0.3 m; they are commonly reported to stall in 0.15-0.2 m of water
                    (engineering assumption, no peer-reviewed threshold found)
car         0.30 m  Pregnolato et al. 2017 (no passage at 300 mm); also the UK Environment
                    Agency guidance that 30 cm of moving water floats a car
bus         0.50 m  high-floor vehicles; Shand et al. 2011 (Australian Rainfall & Runoff,
                    Project 10, vehicle stability) large vehicles stable to about 0.5 m
truck       0.60 m  heavy goods vehicles; Shand et al. 2011 / Kramer et al. 2016 (large 4x4 and
                    heavy vehicles 0.5-0.6 m), manufacturers' wading depths for trucks
emergency   0.45 m  ambulances are vans (wading depth of common vans ~0.45-0.5 m); fire and rescue
                    trucks deeper, so this is the conservative value for the class
=========== ======= ===========================================================================
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twin.constants import PCU, STALL_DEPTH_M, VEHICLE_CLASSES

__all__ = ["pregnolato_speed_kmh", "flooded_speed_mps", "link_speed_factors", "closure_mask",
           "link_flood_arrays", "STALL_DEPTH_M", "PCU"]

W_MIN_MM = 0.5529 / (2 * 0.0009)  # 307.2 mm, the vertex of the parabola


def pregnolato_speed_kmh(depth_m) -> np.ndarray:
    """Pregnolato et al. (2017) speed in km/h for water depth in metres (held at its minimum beyond
    307 mm); infinite (no restriction) where the depth is 0."""
    d = np.asarray(depth_m, dtype=float)
    w = np.minimum(d * 1000.0, W_MIN_MM)
    v = 0.0009 * w * w - 0.5529 * w + 86.9448
    return np.where(d > 0, v, np.inf)


def flooded_speed_mps(depth_m, speed_limit_mps) -> np.ndarray:
    """Free speed of a flooded link: the Pregnolato curve capped by the link's speed limit."""
    return np.minimum(np.asarray(speed_limit_mps, dtype=float), pregnolato_speed_kmh(depth_m) / 3.6)


def link_speed_factors(depth_m, speed_limit_mps) -> np.ndarray:
    """Flooded free speed / speed limit per link, in (0, 1]: 1 where dry or where the curve stays
    above the limit (``TrafficModel.link_speed_factor`` reports the same ratio)."""
    v = np.asarray(speed_limit_mps, dtype=float)
    vn = flooded_speed_mps(depth_m, v)
    return np.where(vn >= v, 1.0, vn / v)


def closure_mask(depth_m, stall_depth_m: Mapping[str, float] = STALL_DEPTH_M) -> np.ndarray:
    """(n_links, n_classes) bool: link closed to a class where depth >= the class stall depth
    (classes in the order of ``twin.constants.VEHICLE_CLASSES``)."""
    d = np.asarray(depth_m, dtype=float)
    stall = np.array([float(stall_depth_m[c]) for c in VEHICLE_CLASSES])
    return np.ascontiguousarray(d[:, None] >= stall[None, :])


def link_flood_arrays(depth_m, speed_limit_mps, stall_depth_m: Mapping[str, float] = STALL_DEPTH_M):
    """(flooded free speeds [m/s], closure mask) of links under ``depth_m`` of standing water: what
    ``TrafficModel.set_link_depth`` hands to the engine."""
    v = np.asarray(speed_limit_mps, dtype=float)
    return np.minimum(v, flooded_speed_mps(depth_m, v)), closure_mask(depth_m, stall_depth_m)
