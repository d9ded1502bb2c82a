"""Pieces shared by the pages: run pickers, messages, slider marks."""
from __future__ import annotations

import numpy as np
from dash import dcc, html

from ..runs import RunError, list_runs

#: longest message shown to the user (a 10 MB YAML error must not come back as a 10 MB answer)
MAX_MESSAGE_CHARS = 500


def cap(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_options(ctx) -> list[dict]:
    """Run list options: the value is the run id (its folder name), never a path."""
    return [{"label": r["label"], "value": r["id"]} for r in list_runs(ctx.runs_dir)]


def run_picker(ctx, id_: str, selected: str | None, label: str = "Run", placeholder: str = "choose a run") -> html.Div:
    runs = list_runs(ctx.runs_dir)
    opts = [{"label": r["label"], "value": r["id"]} for r in runs]
    values = [o["value"] for o in opts]
    usable = [r["id"] for r in runs if r["status"] != "corrupt"]
    value = selected if selected in values else (usable[0] if usable else (values[0] if values else None))
    return html.Div([
        html.Label(label, htmlFor=id_, className="field-label"),
        dcc.Dropdown(id=id_, options=opts, value=value, placeholder=placeholder, clearable=False,
                     className="run-dropdown"),
    ], className="field")


def message(text: str | None, kind: str = "error") -> html.Div | None:
    if not text:
        return None
    return html.Div(cap(text), className=f"msg msg-{kind}", role="alert" if kind == "error" else None)


def no_runs_message(ctx) -> html.Div:
    return message(f"No run folders in {ctx.runs_dir} yet. Start one in the Scenario builder or with "
                   f"'twin run SCENARIO --out {ctx.runs_dir}/NAME'.", "info")


def time_marks(t_s: np.ndarray, n: int = 7) -> dict:
    if len(t_s) == 0:
        return {}
    idx = np.unique(np.linspace(0, len(t_s) - 1, min(n, len(t_s))).round().astype(int))
    return {int(i): f"{t_s[i] / 3600:.1f} h" for i in idx}


def safe(fn, *args, **kw):
    """(result, None) or (None, message) for a RunError or an unexpected error in reading a run."""
    try:
        return fn(*args, **kw), None
    except RunError as exc:
        return None, cap(str(exc))
    except Exception as exc:  # never a traceback in the page
        return None, cap(f"{type(exc).__name__}: {exc}")
