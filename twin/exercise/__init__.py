"""Exercises: a scenario that trainees steer as it unfolds (seats, injects) and its objectives.

- :mod:`twin.exercise.objectives`: the measurable goals of an exercise file (``objectives:``),
  parsed with :func:`~twin.exercise.objectives.parse_objectives` and scored on a run folder with
  :func:`~twin.exercise.objectives.score_objectives` (``twin review`` reports them).
"""
