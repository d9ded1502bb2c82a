"""The forecast's bad-input error (one class, imported by every forecast module)."""
from __future__ import annotations

__all__ = ["ForecastError"]


class ForecastError(ValueError):
    """Bad input to a forecast: the message names the input and the value."""
