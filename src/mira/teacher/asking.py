"""How a request is asked again after an invalid answer: the same rules for direct and batch requests."""

from __future__ import annotations

from typing import Any

from mira.core.config import TeacherConfig

# A re-ask at temperature 0 would repeat the same bad answer; sample a little instead.
REASK_TEMPERATURE = 0.7


def no_counts() -> dict[str, Any]:
    """The usage counts of a request not asked yet."""
    return {"prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}


def reask_temperature(config: TeacherConfig, attempt: int) -> float:
    """The temperature of attempt `attempt` (0: the first ask) at one request."""
    return config.temperature if attempt == 0 else max(config.temperature, REASK_TEMPERATURE)


def reask_seed(config: TeacherConfig, attempt: int) -> int:
    """The seed of attempt `attempt`: another sample than the last attempt's."""
    return config.seed + 1009 * attempt


def reask_max_tokens(max_tokens: int) -> int:
    """The room a re-ask gets after an answer cut off at `max_tokens`."""
    return int(max_tokens * 1.5) + 16
