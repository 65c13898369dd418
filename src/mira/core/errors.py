"""Errors shared across layers: a stage that cannot run yet, a stage that stopped before finishing."""

from __future__ import annotations


class StageNotReady(RuntimeError):
    """An upstream stage is missing; the message says which command to run."""


class StageIncomplete(RuntimeError):
    """A stage stopped cleanly before finishing (e.g. teacher budget reached); a rerun resumes."""


class TeacherFailed(StageIncomplete):
    """The teacher failed too often (or its deadline passed) for the stage to count as done.

    Like any StageIncomplete it leaves no done marker; answers so far are cached, so a rerun
    after the server recovers sends only the requests that failed. The CLI exits with code 4.
    """


class ScorerError(ValueError):
    """A record or run that :class:`mira.Scorer` cannot score; the message is one line saying why."""
