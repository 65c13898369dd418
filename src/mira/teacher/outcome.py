"""When a stage's teacher failures mean the stage must stop instead of being marked done.

A failed request is a value (``TeacherResult.ok == False``), so a stage always gets a result for
every request. Whether the stage may still finish is decided here, the same way for every stage:

* a request cut by the stage's deadline (``teacher.deadline_s``) always stops the stage;
* with ``teacher.max_failed_share`` set, more failed requests than that share stop it;
* unset (the default), the stage stops when failures leave a group unusable: without anchors
  (discover) or without enough labels to train a student (annotate).

The stop message is one line naming the server and what it did, e.g. ``teacher at
http://127.0.0.1:8000/v1 answered http 500 on 6 of 6 requests``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DEADLINE_ERROR = "teacher deadline passed"
UNAVAILABLE_ERROR = "not sent: teacher unavailable"
BUDGET_ERROR = "budget"
_KINDS = [
    (re.compile(r"^http (\d{3})"), lambda m: f"http {m.group(1)}"),
    (re.compile(r"^timeout"), lambda m: "timeout"),
    (re.compile(r"^connection error"), lambda m: "connection error"),
    (re.compile(r"^(malformed response|unreadable response)"), lambda m: "malformed response"),
    (re.compile(r"^malformed logprobs"), lambda m: "malformed logprobs"),
    (re.compile(r"^reply too long"), lambda m: "reply too long"),
    (re.compile(r"^invalid JSON"), lambda m: "invalid JSON"),
    (re.compile(r"^schema violation"), lambda m: "schema-invalid answer"),
    (re.compile(r"^cut off"), lambda m: "answer cut off at max_tokens"),
    (re.compile("^" + DEADLINE_ERROR), lambda m: "deadline passed"),
    (re.compile("^" + UNAVAILABLE_ERROR), lambda m: "not sent"),
]


def error_kind(error: str | None) -> str:
    """A short class of a failure message ("http 500", "timeout", "schema-invalid answer", ...)."""
    text = (error or "").strip()
    for pattern, name in _KINDS:
        match = pattern.match(text)
        if match:
            return name(match)
    return text.split(":")[0][:60] or "unknown error"


@dataclass
class Failures:
    """The failed requests among a stage's results (budget-skipped requests are not failures)."""

    total: int = 0
    failed: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def deadline(self) -> bool:
        return self.kinds.get("deadline passed", 0) > 0

    @property
    def share(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def line(self, url: str) -> str:
        kinds = Counter({k: n for k, n in self.kinds.items() if k != "not sent"})
        failed, total = self.failed - self.not_sent, self.total - self.not_sent
        if len(kinds) == 1 and next(iter(kinds)).startswith("http "):
            status = next(iter(kinds)).removeprefix("http ")
            text = f"teacher at {url} answered {status} on {failed} of {total} requests"
        elif len(kinds) == 1:
            text = f"teacher at {url} failed {failed} of {total} requests: {next(iter(kinds))}"
        else:
            detail = ", ".join(f"{kind}: {n}" for kind, n in kinds.most_common())
            text = f"teacher at {url} failed {failed} of {total} requests ({detail})"
        if self.not_sent:
            text += f"; {self.not_sent} more not sent after teacher.max_consecutive_failures in a row"
        if "malformed logprobs" in kinds:
            text += " (a server whose logprobs are broken can be used with teacher.logprobs: false)"
        return text

    @property
    def not_sent(self) -> int:
        return self.kinds.get("not sent", 0)


def tally(results: Iterable[Any]) -> Failures:
    out = Failures()
    for result in results:
        if result.error == BUDGET_ERROR:
            continue
        out.total += 1
        if not result.ok:
            out.failed += 1
            out.kinds[error_kind(result.error)] += 1
    return out


def stop_reason(failures: Failures, url: str, max_failed_share: float | None, starved: list[str],
                starved_what: str) -> str | None:
    """The one-line reason the stage must stop, or None when it may finish.

    `starved` are the groups the failures left unusable; `starved_what` says how ("without anchors").
    """
    if not failures.failed:
        return None
    if failures.deadline:
        return f"{failures.line(url)} (teacher.deadline_s passed)"
    if max_failed_share is not None:
        if failures.share > max_failed_share:
            return f"{failures.line(url)}, more than teacher.max_failed_share={max_failed_share:g}"
        return None
    if starved:
        return f"{failures.line(url)}; groups {', '.join(starved)} are left {starved_what}"
    return None


def raise_if_failed(teacher: Any, results: list[Any], stage: str, starved: list[str], starved_what: str) -> None:
    """Raise :class:`mira.pipeline.runner.TeacherFailed` when `results` mean `stage` must not be marked done."""
    from mira.core.errors import TeacherFailed

    reason = stop_reason(tally(results), teacher.url, teacher.config.max_failed_share, starved, starved_what)
    if reason:
        raise TeacherFailed(f"{reason}. Failed requests are not cached: rerun `mira {stage}` when the server "
                            "works; it sends only those")


class FailureTracker:
    """A stage's teacher results by group, for :func:`raise_if_failed`."""

    def __init__(self, stage: str, starved_what: str) -> None:
        self.stage, self.starved_what = stage, starved_what
        self.results: list[Any] = []
        self.failed_groups: set[str] = set()

    def add(self, group: str, result: Any) -> None:
        self.results.append(result)
        if not result.ok:
            self.failed_groups.add(group)

    def check(self, teacher: Any, unusable: list[str]) -> None:
        """Stop when failures exceed the policy; `unusable`: groups the stage could not complete."""
        starved = [g for g in unusable if g in self.failed_groups]
        raise_if_failed(teacher, self.results, self.stage, starved, self.starved_what)
