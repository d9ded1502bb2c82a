"""Exercise tests use the session-wide ``browser`` fixture of tests/conftest.py (helpers in ``helpers.py``)."""
