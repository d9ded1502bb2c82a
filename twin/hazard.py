"""Flood hazard to people: the one implementation of the FD2321 hazard rating and its classes.

Source: HR Wallingford for Defra / Environment Agency (2006), *Flood Risks to People, Phase 2*,
R&D Technical Report FD2321/TR2 (also Defra/EA 2008, *Supplementary note on flood hazard ratings
and thresholds for development planning and control purpose*).

Hazard rating (FD2321/TR2, eq. 3.1)::

    HR = d · (v + 0.5) + DF        d depth [m], v speed [m/s], DF debris factor [-]

Debris factor (FD2321/TR2, Table 3.1), by the dominant land use of the flooded area:

=============================== ============== ========== =====
depth d                         pasture/arable woodland   urban
=============================== ============== ========== =====
0 to 0.25 m                     0              0          0
0.25 to 0.75 m                  0              0.5        1
d > 0.75 m and/or v > 2 m/s     0.5            1          1
=============================== ============== ========== =====

Hazard classes (FD2321/TR2, Table 13.1; thresholds 0.75 / 1.25 / 2.0 by default, a scenario may
change them through ``people.params.hazard_thresholds``):

=============== ============ =================================================================
HR              class        description
=============== ============ =================================================================
less than 0.75  low          "caution": shallow flowing or deep standing water
0.75 to 1.25    moderate     "danger for some": children, the elderly and the infirm
1.25 to 2.0     significant  "danger for most": the general public
more than 2.0   extreme      "danger for all": including the emergency services
=============== ============ =================================================================

Boundary values, decided by the wording of the tables (tested in tests/test_hazard.py):

* DF: a depth of exactly 0.25 m belongs to the row "0 to 0.25 m" (DF 0), exactly 0.75 m to
  "0.25 to 0.75 m"; the last row applies only for d *more than* 0.75 m or v *more than* 2 m/s,
  at any depth (the "and/or" of the table), including d <= 0.25 m.
* classes: "less than 0.75" puts 0.75 in *moderate*; "more than 2.0" puts 2.0 in *significant*;
  1.25, shared by two rows, goes to the higher class (*significant*), the cautious reading.
  So: low HR < t1; moderate t1 <= HR < t2; significant t2 <= HR <= t3; extreme HR > t3.
* dry (d <= 0, or no data: NaN) gives HR = 0 and the class name ``"none"`` in the tables.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["HAZARD_CLASSES", "DEFAULT_THRESHOLDS", "LAND_USES", "DEBRIS_FACTORS", "debris_factor",
           "hazard_rating", "hazard_class", "hazard_class_name", "check_thresholds", "land_use", "land_use_indices",
           "land_use_index"]

HAZARD_CLASSES: tuple[str, ...] = ("low", "moderate", "significant", "extreme")
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.75, 1.25, 2.0)

# FD2321/TR2 Table 3.1: DF per land use for the rows (d <= 0.25 m, 0.25 < d <= 0.75 m, d > 0.75 m or v > 2 m/s)
LAND_USES: tuple[str, ...] = ("pasture", "woodland", "urban")
DEBRIS_FACTORS: dict[str, tuple[float, float, float]] = {
    "pasture": (0.0, 0.0, 0.5),    # pasture / arable
    "woodland": (0.0, 0.5, 1.0),
    "urban": (0.0, 1.0, 1.0),
}
DF_SHALLOW_M = 0.25   # upper bound of the first row (inclusive)
DF_DEEP_M = 0.75      # d above this: last row
DF_FAST_MPS = 2.0     # v above this: last row

# land-cover class names read as urban for the debris factor (the rest is pasture/arable)
_URBAN_WORDS = ("urban", "built", "resid", "commer", "indus", "road")
_WOOD_WORDS = ("forest", "wood", "tree")


def _land_use_index(land_use, shape) -> np.ndarray:
    """0 pasture, 1 woodland, 2 urban: from a bool (True urban, False pasture/arable), a land-use
    name, an array of either, or an integer array of these indices (:func:`land_use_index`: a grid
    converted once), broadcast to ``shape``."""
    a = np.asarray(land_use)
    if a.dtype == bool:
        return np.broadcast_to(np.where(a, 2, 0), shape)
    if a.dtype.kind in "iu":
        if a.size and (int(a.min()) < 0 or int(a.max()) >= len(LAND_USES)):
            code = int(a.min()) if int(a.min()) < 0 else int(a.max())
            raise ValueError(f"hazard: land-use index {code} is not one of 0..{len(LAND_USES) - 1} {LAND_USES}")
        return np.broadcast_to(a, shape)
    if a.dtype.kind in "UO":
        names = np.unique(a.astype(str))
        bad = [n for n in names if n not in LAND_USES]
        if bad:
            raise ValueError(f"hazard: land use {str(bad[0])!r} is not one of {LAND_USES}")
        a = a.astype(str)
        return np.broadcast_to(np.select([a == u for u in LAND_USES], range(len(LAND_USES))), shape)
    raise ValueError(f"hazard: land use must be bool (urban) or one of {LAND_USES}, got dtype {a.dtype}")


def land_use_index(land_use) -> np.ndarray:
    """Land use (as :func:`debris_factor` takes it) as int8 indices into :data:`LAND_USES`: converting a
    grid of names once saves a sort of the names on every hazard map of it; the ratings are the same."""
    a = np.asarray(land_use)
    return np.asarray(_land_use_index(a, a.shape), dtype=np.int8)


def debris_factor(depth_m, speed_mps=0.0, urban=True) -> np.ndarray:
    """FD2321 debris factor DF (Table 3.1).

    ``urban``: True (urban), False (pasture/arable), a land-use name from :data:`LAND_USES`, or an
    array of these broadcast against ``depth_m`` (e.g. :func:`land_use` of the city). Dry or no-data cells get 0.
    """
    d = np.nan_to_num(np.asarray(depth_m, dtype=float), nan=0.0)
    v = np.nan_to_num(np.asarray(speed_mps, dtype=float), nan=0.0)
    d, v = np.broadcast_arrays(d, v)
    row = np.where((d > DF_DEEP_M) | (v > DF_FAST_MPS), 2, np.where(d > DF_SHALLOW_M, 1, 0))
    table = np.array([DEBRIS_FACTORS[u] for u in LAND_USES])
    df = table[_land_use_index(urban, d.shape), row]
    return np.where(d > 0.0, df, 0.0)


def hazard_rating(depth_m, speed_mps, urban=True) -> np.ndarray:
    """HR = d·(v + 0.5) + DF (FD2321/TR2 eq. 3.1), vectorised; 0 where dry (d <= 0 or NaN).

    Negative or NaN speeds count as 0; ``urban`` as in :func:`debris_factor`.
    """
    d = np.clip(np.nan_to_num(np.asarray(depth_m, dtype=float), nan=0.0), 0.0, None)
    v = np.clip(np.nan_to_num(np.asarray(speed_mps, dtype=float), nan=0.0), 0.0, None)
    hr = d * (v + 0.5) + debris_factor(d, v, urban)
    return np.where(d > 0.0, hr, 0.0)


def check_thresholds(thresholds: Sequence[float], where: str = "hazard_thresholds") -> tuple[float, float, float]:
    """The three class thresholds as floats; ValueError naming ``where`` unless 3 finite increasing numbers."""
    try:
        t = tuple(float(x) for x in thresholds)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: must be 3 increasing numbers, got {thresholds!r}") from None
    if len(t) != 3 or not all(np.isfinite(t)) or not (0 < t[0] < t[1] < t[2]):
        raise ValueError(f"{where}: must be 3 finite increasing positive numbers, got {thresholds!r}")
    return t  # type: ignore[return-value]


def hazard_class(hr, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Class index 0..3 (:data:`HAZARD_CLASSES`: low, moderate, significant, extreme) of each HR.

    low HR < t1; moderate t1 <= HR < t2; significant t2 <= HR <= t3; extreme HR > t3 (see the
    module notes for why). NaN counts as 0 (low).
    """
    t1, t2, t3 = check_thresholds(thresholds)
    h = np.nan_to_num(np.asarray(hr, dtype=float), nan=0.0)
    return (np.searchsorted(np.array([t1, t2]), h, side="right") + (h > t3)).astype(np.int64)


def hazard_class_name(hr, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Class names of each HR (object array), ``"none"`` where HR <= 0 (dry)."""
    h = np.asarray(hr, dtype=float)
    names = np.array(HAZARD_CLASSES, dtype=object)
    return np.where(np.nan_to_num(h, nan=0.0) > 0, names[hazard_class(h, thresholds)], "none")


def land_use(landcover, classes) -> np.ndarray | str:
    """FD2321 land use per cell from the city's land cover: class names that read as built-up
    (urban, built, residential, commercial, industrial, road) → ``"urban"``, forest/wood →
    ``"woodland"``, the rest (paddy, sand, water, ...) → ``"pasture"`` (pasture/arable column).
    ``"urban"`` everywhere when the city has no land cover."""
    idx = land_use_indices(landcover, classes)
    if isinstance(idx, str):
        return idx
    return np.asarray(LAND_USES, dtype="<U8")[idx]


def land_use_indices(landcover, classes) -> np.ndarray | str:
    """:func:`land_use` as int8 indices into :data:`LAND_USES` (what :func:`debris_factor` reads
    fastest: no grid of names to sort)."""
    if landcover is None or not classes:
        return "urban"
    lc = np.asarray(landcover)
    out = np.full(lc.shape, LAND_USES.index("pasture"), dtype=np.int8)
    for k, v in classes.items():
        name = str(v).lower()
        if any(w in name for w in _URBAN_WORDS):
            out[lc == int(k)] = LAND_USES.index("urban")
        elif any(w in name for w in _WOOD_WORDS):
            out[lc == int(k)] = LAND_USES.index("woodland")
    return out
