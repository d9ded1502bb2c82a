"""Flood hazard to people: HR = d·(v + 0.5) + DF (Defra/EA FD2321, HR Wallingford 2006).

Hazard classes (FD2321 Table 13.1): HR < 0.75 low ("caution"), 0.75-1.25 moderate ("danger for
some": children, elderly, infirm), 1.25-2.0 significant ("danger for most"), >= 2.0 extreme
("danger for all").
"""
from __future__ import annotations

import numpy as np

HAZARD_CLASSES = ("low", "moderate", "significant", "extreme")


def debris_factor(depth_m, speed_mps=None, urban: bool = True):
    """FD2321 debris factor.

    Urban areas: 0 for d <= 0.25 m, 1 above. Pasture/arable (``urban=False``): 0 up to 0.75 m (and
    v <= 2 m/s), 0.5 above.
    """
    d = np.asarray(depth_m, dtype=float)
    if urban:
        return np.where(d > 0.25, 1.0, 0.0)
    fast = np.zeros_like(d, dtype=bool) if speed_mps is None else (np.asarray(speed_mps, dtype=float) > 2.0)
    return np.where((d > 0.75) | (fast & (d > 0.25)), 0.5, 0.0)


def hazard_rating(depth_m, speed_mps, urban: bool = True):
    """HR = d·(v + 0.5) + DF, vectorised; dry (d <= 0) gives 0."""
    d = np.maximum(np.asarray(depth_m, dtype=float), 0.0)
    v = np.maximum(np.asarray(speed_mps, dtype=float), 0.0)
    return d * (v + 0.5) + debris_factor(d, v, urban)


def hazard_class(hr, thresholds=(0.75, 1.25, 2.0)):
    """Integer class 0..3 (low, moderate, significant, extreme) for each hazard rating."""
    return np.searchsorted(np.asarray(thresholds, dtype=float), np.asarray(hr, dtype=float), side="right")
