"""Direct flood damage from the JRC global depth–damage functions (Asia).

Huizinga, J., de Moel, H., Szewczyk, W. (2017). *Global flood depth-damage functions: methodology and
the database with guidelines.* EUR 28552 EN, JRC105688, doi:10.2760/16510. Curves for the Asia region,
damage fraction (0–1) at water depths 0, 0.5, 1, 1.5, 2, 3, 4, 5, 6 m, linear in between, 1 beyond 6 m.

Maximum damage per m² (``MAX_DAMAGE_USD_PER_M2``) is an **assumption** for Vietnam (order of
magnitude of Huizinga's country table for lower-middle-income Asia, 2010 prices, buildings +
content, per m² of land-use footprint already reduced by the building fraction); override it with
local values. Damage is also reported as *damage-equivalent area* (m² × damage fraction), which
does not depend on prices.

A cell counts (flooded area, damage) only where its maximum depth reaches ``FLOODED_MIN_DEPTH_M``
(0.1 m, the lower edge of the flooded-area depth classes, ``twin.couplings.DEPTH_CLASSES``): the
rain film of a few millimetres that wets every cell of a storm is not a flood. Before this rule every
wet cell counted, and a typhoon's "agricultural flooded area" was the whole farmland (117 km² while
the land flooded by 0.1 m or more peaked at 0.73 km²).
"""
from __future__ import annotations

from typing import Any

import numpy as np

JRC_DEPTH_M = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0])
JRC_ASIA = {
    "residential": np.array([0.00, 0.33, 0.49, 0.62, 0.72, 0.87, 0.93, 0.98, 1.00]),
    "commercial": np.array([0.00, 0.38, 0.54, 0.66, 0.76, 0.88, 0.94, 0.98, 1.00]),
    "industrial": np.array([0.00, 0.28, 0.48, 0.63, 0.72, 0.86, 0.91, 0.96, 1.00]),
    "agriculture": np.array([0.00, 0.14, 0.37, 0.52, 0.56, 0.66, 0.83, 0.99, 1.00]),
}
#: a cell is flooded (counted in the area and damaged) from this maximum depth on [m]
FLOODED_MIN_DEPTH_M = 0.1
MAX_DAMAGE_USD_PER_M2 = {"residential": 120.0, "commercial": 150.0, "industrial": 100.0, "agriculture": 0.6}

# land-cover class name keywords -> damage class
_KEYWORDS = [
    ("residential", ("resid", "urban", "built", "house", "settle")),
    ("commercial", ("commer", "business", "retail", "service", "public", "institution", "tourism", "hotel")),
    ("industrial", ("indus", "port", "factory", "warehouse")),
    ("agriculture", ("agri", "rice", "paddy", "crop", "farm", "cultiv")),
]


def damage_fraction(depth_m: np.ndarray, use: str) -> np.ndarray:
    d = np.clip(np.nan_to_num(np.asarray(depth_m, dtype=float)), 0.0, None)
    return np.interp(d, JRC_DEPTH_M, JRC_ASIA[use], left=0.0, right=1.0)


def damage_class_of(landcover_classes: dict) -> dict[int, str | None]:
    out: dict[int, str | None] = {}
    for code, name in (landcover_classes or {}).items():
        n = str(name).lower()
        out[int(code)] = next((use for use, kws in _KEYWORDS if any(k in n for k in kws)), None)
    return out


def direct_damage(max_depth: np.ndarray, landcover: np.ndarray | None, landcover_classes: dict | None,
                  cell_area_m2: float, building_fraction: np.ndarray | None = None,
                  max_damage: dict[str, float] | None = None) -> dict:
    """Damage by JRC class: equivalent area [m²], USD (with the stated max damages) and the land of the
    class flooded by ``FLOODED_MIN_DEPTH_M`` or more at its deepest [m²]; shallower cells count for neither."""
    max_damage = {**MAX_DAMAGE_USD_PER_M2, **(max_damage or {})}
    result: dict[str, Any] = {"method": "JRC global depth-damage functions, Asia (Huizinga et al. 2017, doi:10.2760/16510); "
                        f"cells with a maximum depth of {FLOODED_MIN_DEPTH_M:g} m or more",
              "min_depth_m": FLOODED_MIN_DEPTH_M,
              "max_damage_usd_per_m2_assumed": max_damage, "by_class": {}, "total_usd": 0.0}
    if landcover is None or not landcover_classes:
        return result
    classes = damage_class_of(landcover_classes)
    total = 0.0
    for use in JRC_ASIA:
        codes = [c for c, u in classes.items() if u == use]
        if not codes:
            continue
        mask = np.isin(landcover, codes) & np.isfinite(max_depth) & (max_depth >= FLOODED_MIN_DEPTH_M)
        frac = damage_fraction(max_depth[mask], use)
        area = np.full(frac.shape, cell_area_m2)
        if building_fraction is not None and use != "agriculture":
            area = area * np.clip(np.nan_to_num(building_fraction[mask]), 0.0, 1.0)
        eq_area = float(np.sum(frac * area))
        usd = eq_area * max_damage[use]
        total += usd
        result["by_class"][use] = {"damage_equivalent_area_m2": eq_area, "damage_usd": usd,
                                   "flooded_area_m2": float(np.count_nonzero(mask) * cell_area_m2)}
    result["total_usd"] = total
    return result
