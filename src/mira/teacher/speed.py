"""How long teacher work takes: measured from this run's own records, else the model's speed constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mira.core.config import RunConfig
from mira.io.files import read_json
from mira.run.rundir import RunDir


@dataclass
class Estimate:
    seconds: float | None
    basis: str  # how the figure was made: "measured: ...", "constants: ..." or "not measured"
    # Teacher stages: estimated (prompt, output) tokens of the new requests, and their price at
    # teacher.price_per_mtok (None when no price is set).
    tokens: tuple[int, int] | None = None
    cost: float | None = None


def teacher_estimate(config: RunConfig, run: RunDir, stage: str, work: dict[str, Any]) -> Estimate:
    """Time, tokens and price of `work` (:func:`mira.teacher.estimate`'s counts) for the teacher usage of `stage`."""
    estimate = _teacher_time(config, run, stage, work)
    estimate.tokens = (int(work["prompt_tokens_est"]), int(work["completion_tokens_est"]))
    estimate.cost = token_cost(config, *estimate.tokens)
    return estimate


def token_cost(config: RunConfig, prompt_tokens: int, output_tokens: int) -> float | None:
    """The price of the tokens at ``teacher.price_per_mtok``; None when no price is set."""
    prices = config.teacher.price_per_mtok
    if prices is None:
        return None
    return (prompt_tokens * prices.input + output_tokens * prices.output) / 1_000_000


def _teacher_time(config: RunConfig, run: RunDir, stage: str, work: dict[str, Any]) -> Estimate:
    new = int(work["requests"]) - int(work["cached"])
    what = f"{new} new of {work['requests']} teacher requests"
    speed = measured_speed(run, stage, config.teacher.concurrency)
    if speed is not None:
        per_answer, basis = speed
        return Estimate(new * per_answer, f"{what} x {per_answer:.3g} s (measured: {basis})")
    constant = _constant_seconds(config, work)
    if constant is not None:
        return Estimate(constant, f"{what}; constants for {config.teacher.model} (nothing measured in this run)")
    return Estimate(None, f"{what}; not measured, and no speed figure for {config.teacher.model!r}")


def measured_speed(run: RunDir, stage: str, concurrency: int = 1) -> tuple[float, str] | None:
    """Seconds of stage time per new teacher answer, from this run's records: the stage's last run
    (marker ``seconds`` over its ``teacher.answered``; a marker of an older mira takes the answers
    from ``usage/<stage>.json``'s last session), else the mean latency of its answers over the
    teacher's concurrency (a stage interrupted before its marker)."""
    marker = run.done(stage) or {}
    usage = read_usage(run, stage)
    teacher = marker.get("teacher") or (usage or {}).get("last") or {}
    answered = int(teacher.get("answered") or 0)
    if marker.get("seconds") and answered > 0:
        seconds = float(marker["seconds"])
        return seconds / answered, f"its last run took {seconds:.0f} s for {answered} new answers"
    total = (usage or {}).get("total") or {}
    if total.get("answered") and total.get("latency_s"):
        # `concurrency` requests are in flight at once, each waiting its full latency: the wall
        # time per answer is the latency over the concurrency (from latency alone, a stage at
        # concurrency 2 would be priced at well over its real time).
        slots = max(1, concurrency)
        per = float(total["latency_s"]) / int(total["answered"]) / slots
        return per, (f"mean latency of {int(total['answered'])} answers in usage/{stage}.json"
                     + (f" over {slots} concurrent requests" if slots > 1 else ""))
    return None


def read_usage(run: RunDir, stage: str) -> dict[str, Any] | None:
    """``usage/<stage>.json`` as stored, None when it is missing or unreadable."""
    try:
        return read_json(run.usage_dir / f"{stage}.json")
    except (OSError, ValueError):
        return None


def _constant_seconds(config: RunConfig, work: dict[str, Any]) -> float | None:
    from mira.teacher.usage import MODEL_SPEEDS

    speeds = MODEL_SPEEDS.get(config.teacher.model)
    if not speeds or config.teacher.provider != "local":
        return None
    return work["completion_tokens_est"] / speeds[0] + work["prompt_tokens_est"] / speeds[1]
