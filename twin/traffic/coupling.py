"""Flood grid -> road links: the depth each link sees, for ``TrafficModel.set_link_depth``.

The traffic room's face of the one link sampler in :mod:`twin.couplings` (DESIGN.md: couplings are
plain functions/objects, written once): built from a ``RoadNetwork`` and the grid, then called with
every new depth field. Each link is sampled at points along its LineString (every half cell by
default); its depth is the maximum over the cells it crosses (default: one flooded dip closes a road)
or their mean. Points outside the grid or on invalid cells see no water.
"""
from __future__ import annotations

import numpy as np

from twin.couplings import LinkDepthSampler as _GridSampler

__all__ = ["LinkDepthSampler"]


class LinkDepthSampler(_GridSampler):
    """``sampler(depth) -> per-link depth``; ``depth`` is a (ny, nx) grid with ``transform``."""

    def __init__(self, network, transform, shape, *, spacing_m: float | None = None, statistic: str = "max",
                 valid: np.ndarray | None = None):
        if statistic not in ("max", "mean"):
            raise ValueError(f"statistic: must be 'max' or 'mean', got {statistic!r}")
        spacing = float(spacing_m) if spacing_m is not None else 0.5 * abs(transform.a)
        if not spacing > 0:
            raise ValueError(f"spacing_m: must be > 0, got {spacing_m!r}")
        super().__init__(network.links, transform, (int(shape[0]), int(shape[1])), spacing, valid=valid)
        self.statistic = statistic

    @classmethod
    def from_terrain(cls, network, terrain, **kwargs) -> LinkDepthSampler:
        kwargs.setdefault("valid", terrain.valid)
        return cls(network, terrain.transform, terrain.shape, **kwargs)

    def __call__(self, depth) -> np.ndarray:
        h = np.asarray(depth, dtype=np.float64)
        if h.shape != self.shape:
            raise ValueError(f"LinkDepthSampler: depth must have shape {self.shape}, got {h.shape}")
        h = np.maximum(h, 0.0)
        return self.max(h) if self.statistic == "max" else self.mean(h)
