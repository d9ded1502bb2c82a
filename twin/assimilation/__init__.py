"""Data assimilation into ensembles of flood models: the localised ensemble Kalman filter.

:class:`EnsembleKalmanFilter` updates every member's water state from point observations of depth or
water level (stage); see :mod:`twin.assimilation.enkf` and docs/user-guide/sensors-and-live.md.
"""
from __future__ import annotations

from twin.assimilation.enkf import AnalysisReport, EnsembleKalmanFilter, gaspari_cohn

__all__ = ["AnalysisReport", "EnsembleKalmanFilter", "gaspari_cohn"]
