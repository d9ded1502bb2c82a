"""The shape of ``review.json`` (``twin review``), declared as pydantic models.

Read a review with ``ReviewReport.model_validate_json(path.read_text())``; the JSON schema is
``ReviewReport.model_json_schema()`` (``docs/user-guide/review.md`` explains each number).
Times are model seconds since the scenario start; ``delta`` is always *run minus without*: the
reviewed run's value minus the value of the run without the decision (or, for the baseline,
without every trainee decision).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["REVIEW_SCHEMA_VERSION", "KpiDelta", "Effect", "DecisionEntry", "InjectEntry", "ObjectiveResult",
           "Curve", "BaselineInfo", "NoopCheck", "ReviewReport"]

REVIEW_SCHEMA_VERSION = 1


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KpiDelta(_M):
    run: float | None = Field(description="the reviewed run's value (None: not measured)")
    without: float | None = Field(description="the value without the decision(s)")
    delta: float | None = Field(description="run - without")
    units: str
    better: Literal["lower", "higher"]
    label: str
    helped: bool | None = Field(description="the delta goes the better way (None: no change or not measured)")


class Effect(_M):
    """What one trainee decision changed: the run against its counterfactual fork without it."""

    counterfactual_dir: str
    from_checkpoint_s: float | None = Field(description="checkpoint the fork restored (None: from the start)")
    kpis: dict[str, KpiDelta]


class DecisionEntry(_M):
    decision_id: int
    t_s: float = Field(description="model time it acted")
    at_s: float = Field(description="model time it was asked for")
    source: str
    role: Literal["trainee", "inject", "scenario", "follow_up"]
    issuer: str
    type: str
    params: dict[str, Any]
    outcome: str
    message: str
    effect: Effect | None = Field(None, description="trainee decisions that acted: their counterfactual")


class InjectEntry(_M):
    inject_id: str
    t_s: float
    message: str
    decision_id: int | None


class ObjectiveResult(_M):
    index: int
    kind: str
    label: str
    spec: dict[str, Any]
    status: Literal["met", "missed", "unmeasured"]
    measured: float | None
    target: float
    units: str
    decided_at_s: float | None = Field(description="model time the outcome was settled (a miss: when it became "
                                                   "irrecoverable; met: the end of the run)")
    detail: str
    baseline: dict[str, Any] | None = Field(None, description="the same objective scored on the baseline "
                                                                "(status, measured, decided_at_s)")


class Curve(_M):
    t_s: list[float]
    values: list[float]
    units: str
    label: str


class BaselineInfo(_M):
    run_dir: str
    origin: Literal["given", "computed", "the run itself"]
    from_checkpoint_s: float | None = None
    note: str = ""


class NoopCheck(_M):
    """The counterfactual machinery with nothing left out must reproduce the run exactly."""

    identical: bool | None = Field(description="None: not checked (no trainee decision)")
    fork_dir: str | None = None
    from_checkpoint_s: float | None = None
    compared: list[str] = Field(default_factory=list, description="files compared byte for byte / value for value")
    differences: list[str] = Field(default_factory=list)
    note: str = ""


class ReviewReport(_M):
    schema_version: int = REVIEW_SCHEMA_VERSION
    run_dir: str
    scenario: str
    city: str
    end_time_s: float
    generated_utc: str
    water_depth_m: float = Field(description="depth at home that counts as 'the water' for evacuated_before_water")
    is_exercise: bool = Field(description="the run folder has exercise.yaml")
    baseline: BaselineInfo
    noop_check: NoopCheck
    kpis: dict[str, KpiDelta] = Field(description="the run against the baseline")
    decisions: list[DecisionEntry]
    injects: list[InjectEntry]
    objectives: list[ObjectiveResult]
    curves: dict[str, dict[str, Curve]] = Field(description="'run' and 'baseline': KPI curves over model time")
    forks: dict[str, Any] = Field(description="where the counterfactual forks ran and how long they took")
    warnings: list[str] = Field(default_factory=list)
