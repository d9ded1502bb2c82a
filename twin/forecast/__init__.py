"""Ensemble forecasts from a run's state, impact probabilities and CAP 1.2 warnings.

- :func:`run_forecast` (``twin forecast``): K members forked from a run's checkpoint with seeded
  perturbed forcing (:mod:`twin.forecast.perturb`), run on Dask (:mod:`twin.forecast.members`),
  aggregated into a forecast folder (:mod:`twin.forecast.products`; files declared in
  :mod:`twin.output.forecast_schema`).
- warning rules (:mod:`twin.forecast.rules`) and CAP alerts (:mod:`twin.forecast.cap`):
  validated against the OASIS CAP 1.2 schema, published on MQTT, turned into ``warning`` decisions.
"""
from __future__ import annotations

from twin.forecast.cap import alert_to_decision, build_alert, parse_alert, publish_alerts, validate_cap
from twin.forecast.ensemble import ForecastError, run_forecast
from twin.forecast.rules import Rules, load_rules

__all__ = ["run_forecast", "ForecastError", "Rules", "load_rules", "alert_to_decision", "build_alert",
           "parse_alert", "publish_alerts", "validate_cap"]
