import subprocess
import sys

import twin


def test_core_is_built_and_private():
    from twin import _core

    assert _core.max_threads() >= 1
    assert isinstance(_core.has_openmp, bool)


def test_public_api_names_resolve_lazily():
    assert "FloodModel" in dir(twin)
    try:
        _ = twin.no_such_name
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("unknown attribute did not raise")


def test_cli_help_runs():
    out = subprocess.run([sys.executable, "-m", "twin", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "usage: twin" in out.stdout
