"""How the command line shows mira's log records: each warning once per process, without the
timestamp and logger name that only debugging needs (``--verbose`` keeps both, and every record).

One condition is often met in many places of one command: the same note from every selection that
``mira compare`` builds, the same retry from every shard. Said six times, with a timestamp each, it
reads as six problems; the user needs it once.
"""

from __future__ import annotations

import logging


class OncePerProcess(logging.Filter):
    """Passes a warning (or worse) the first time its logger, level and text are seen; the same
    record again is dropped. Records below WARNING always pass (``--verbose`` shows them all)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class PlainFormatter(logging.Formatter):
    """``warning: <message>``, as the CLI's other lines are written (a traceback, if any, follows)."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def cli_handler(verbose: bool) -> logging.Handler:
    """The stderr handler of the ``mira`` command: plain lines, each warning once; with `verbose`,
    every record with its time and logger."""
    handler = logging.StreamHandler()
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    else:
        handler.setFormatter(PlainFormatter())
        handler.addFilter(OncePerProcess())
    return handler
