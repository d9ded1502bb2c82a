"""Warning rules (YAML): when a forecast's probability of flooding an area makes a CAP alert.

Format (the keys of the first example are required; the others optional)::

    sender: pccc-tamky@danang.gov.vn          # optional: the CAP sender (default tamky-twin@localhost)
    rules:
      - {area: Tam Kỳ, threshold_m: 0.5, probability: 0.3, within: 6h, severity: Severe}
      - area: Bệnh viện Đa khoa tỉnh Quảng Nam  # a place (name or place_id)
        threshold_m: 0.3
        probability: 0.5
        within: 12h
        severity: Extreme
        urgency: Expected                      # default: Immediate when the onset is within 1 h, else Expected
        certainty: Likely                      # default: Likely when P > 0.5, else Possible
        min_share_of_homes: 0.05               # wards and 'all': share of the homes above threshold_m
        event: Flood

``area`` is a ward name, a place name or id of the city, or ``all`` (the whole city). A rule fires
when the share of members in which the area is flooded above ``threshold_m`` at some output time
within ``within`` of the issue time is at least ``probability``. A ward (or ``all``) is flooded
when the water rises above ``threshold_m`` at ``min_share_of_homes`` or more of its homes (homes
weighted by the city's building fraction); a place when the water at the place (the cell a person
there meets: ``twin.output.tables.place_cells``) rises above ``threshold_m``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.valuetypes import PositiveDuration

__all__ = ["Rule", "Rules", "load_rules", "RulesError", "DEFAULT_SENDER"]

DEFAULT_SENDER = "tamky-twin@localhost"


class RulesError(ValueError):
    """A rules file that cannot be used: the message names the file, the rule, the key and the value."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    area: str = Field(..., min_length=1)
    threshold_m: float = Field(..., gt=0, le=20)
    probability: float = Field(..., gt=0, le=1)
    within: PositiveDuration
    severity: Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
    urgency: Literal["Immediate", "Expected", "Future", "Past", "Unknown"] | None = None
    certainty: Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"] | None = None
    min_share_of_homes: float = Field(0.05, gt=0, le=1)
    event: str = Field("Flood", min_length=1, max_length=100)

    @property
    def key(self) -> str:
        """What identifies the rule across forecasts (updates and cancellations follow it)."""
        return f"{self.area}|{self.threshold_m:g}|{self.severity}"


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender: str = Field(DEFAULT_SENDER, pattern=r"^[^\s,<&]+$")
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    rules: list[Rule] = Field(..., min_length=1)

    def check_areas(self, city, source: str = "rules") -> None:
        """RulesError naming every rule whose area is no ward, no place of ``city`` and not 'all'."""
        from twin.geo import normalise_name as norm

        wards = _ward_names(city)
        pl = getattr(city, "places", None)
        places: set[str] = set()
        outside: set[str] = set()
        if pl is not None and len(pl):
            pl = pl[~pl["kind"].astype(str).str.startswith("gauge")]  # gauges stand in the river on purpose
            t = getattr(city, "terrain", None)
            for row in pl.itertuples(index=False):
                keys = {norm(str(row.name)), norm(str(row.place_id))}
                inside = True
                if t is not None:
                    r, c = t.rowcol(float(row.x), float(row.y))
                    inside = 0 <= r < t.shape[0] and 0 <= c < t.shape[1]
                (places if inside else outside).update(keys)
        bad = []
        for i, r in enumerate(self.rules):
            a = norm(r.area)
            if a == "all" or a in {norm(w) for w in wards} or a in places:
                continue
            if a in outside:
                bad.append(f"rules.{i}.area: the place {r.area!r} lies outside the model grid")
                continue
            bad.append(f"rules.{i}.area: {r.area!r} is not a ward ({', '.join(wards) or 'the city has no wards'}), "
                       "a place of the city, or 'all'")
        if bad:
            raise RulesError(f"{source}: " + "; ".join(bad))


def _ward_names(city) -> list[str]:
    pop = getattr(city, "population", None)
    if pop is not None and getattr(city, "ward_raster", None) is not None:
        col = "ward_name" if "ward_name" in pop.columns else "ward"
        return [str(n) for n in pop[col]]
    return []


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules YAML; RulesError naming the file, the key and the value."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{p}: cannot read the rules file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RulesError(f"{p}: not valid YAML{where} ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict) or "rules" not in data:
        raise RulesError(f"{p}: expected a mapping with a 'rules' list, e.g. rules: [{{area: all, threshold_m: 0.5, "
                         "probability: 0.3, within: 6h, severity: Severe}]")
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"])
            msgs.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
        raise RulesError(f"{p}: " + "; ".join(msgs)) from None
