"""The Tam Kỳ Twin dashboard: a Dash multi-page app over run folders (``twin serve``).

Pages: Map, Scenario builder, Compare, Sensors, Emergency. The app reads run folders and the
sensor store and starts runs only through the public entry point ``python -m twin run``.
"""
from __future__ import annotations


def create_app(*args, **kwargs):
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
