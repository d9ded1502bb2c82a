"""After-action review of a run with decisions (``twin review``).

:func:`~twin.review.report.review_run` writes ``review.json`` (shape: :class:`twin.review.model.ReviewReport`)
and a self-contained ``review.html``: the timeline of injects and decisions beside the KPI curves,
the exercise's objectives met or missed and when, the run against its baseline (the same run
without trainee decisions), and the effect of each trainee decision from a counterfactual fork
without it (``twin.review.forks``, on Dask). See ``docs/user-guide/review.md``.
"""
from twin.review.model import ReviewReport
from twin.review.report import ReviewError, review_run

__all__ = ["review_run", "ReviewError", "ReviewReport"]
