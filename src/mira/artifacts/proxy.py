"""One proxy-training result per (selection, seed): the artifact `mira compare` stores and resumes from."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EvalScore(BaseModel):
    """The trained model on one eval set: mean loss in nats per byte, and bits per byte."""

    model_config = ConfigDict(extra="forbid")

    loss: float = Field(ge=0)
    bpb: float = Field(ge=0)
    # Bytes predicted (the loss is their mean).
    bytes: int = Field(ge=1)


class ProxyResult(BaseModel):
    """What one proxy training run measured. JSON round trip: :meth:`to_json` / :meth:`from_json`."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    # Bytes the model was trained to predict (the same for every selection at one config).
    train_bytes: int = Field(ge=1)
    # Passes over the selection: below 1 when the budget is a sample of it, above 1 when a small
    # selection was cycled to fill the budget.
    epochs: float = Field(gt=0)
    selection_bytes: int = Field(ge=1)
    selection_docs: int = Field(ge=1)
    seconds: float = Field(ge=0)
    train_bytes_per_s: float = Field(ge=0)
    device: str
    threads: int | None = None
    params: int = Field(ge=1)
    # Mean training loss (nats/byte) over the last 5% of steps: one step alone is too noisy.
    final_train_loss: float
    eval: dict[str, EvalScore]
    # The ProxyConfig it ran with (model_dump), so a resumed compare can tell a stale artifact.
    config: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> ProxyResult:
        """Parse a stored result; raises pydantic.ValidationError on a damaged or foreign file."""
        return cls.model_validate_json(text)

    def matches(self, config: Any) -> bool:
        """True when this result was trained with ``config`` (a ProxyConfig), ignoring the
        settings that cannot change the numbers' meaning (enabled, seeds, device, threads)."""
        ignore = {"enabled", "seeds", "device", "threads"}
        mine = {k: v for k, v in self.config.items() if k not in ignore}
        theirs = {k: v for k, v in config.model_dump(mode="json").items() if k not in ignore}
        return mine == theirs


def bits_per_byte(loss_nats: float) -> float:
    """Bits per byte of a mean per-byte loss in nats (the model's tokens are bytes)."""
    return loss_nats / math.log(2)
