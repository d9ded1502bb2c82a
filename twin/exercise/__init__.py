"""Exercises: a flood-response rehearsal that seats steer as it unfolds (``twin exercise``), and its objectives.

- :mod:`twin.exercise.spec`: the exercise file (a scenario plus roles, injects and objectives);
- :mod:`twin.exercise.session`: the paced simulation in its own process;
- :mod:`twin.exercise.api`: the JSON API under ``/api/v1/`` (bearer token per seat);
- :mod:`twin.exercise.cli`: ``twin exercise``;
- :mod:`twin.exercise.objectives`: the measurable goals of an exercise file (``objectives:``),
  parsed with :func:`~twin.exercise.objectives.parse_objectives` and scored on a run folder with
  :func:`~twin.exercise.objectives.score_objectives` (``twin review`` reports them).
"""
