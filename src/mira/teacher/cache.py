"""The teacher request cache: ``teacher_cache.sqlite`` in the run directory.

One row per request key (a hash of prompt version, model, sampling parameters, messages and
schema). It keeps the raw response next to the parsed value, the token usage and the latency, so
a rerun replays instead of paying twice and every answer stays auditable. Only valid answers are
written (``ok = 1``); rows with ``ok = 0`` written by older versions are treated as absent.

Several processes may share a run directory: the database runs in WAL mode with a generous busy
timeout, and every write is a single short transaction (``INSERT OR REPLACE``), so concurrent
writers serialise instead of failing. Nothing secret is stored (no headers, no base URL).

A row whose expected scores are not finite numbers (NaN from a broken server, stored by older
versions) is never replayed: it reads as absent and is asked again.
"""

from __future__ import annotations

import errno
import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What a failed write of the cache or the usage file raises: SQLite's errors (SQLITE_FULL is
# "database or disk is full") and the file system's.
STORAGE_ERRORS = (sqlite3.Error, OSError)


class TeacherStorageFailed(OSError):
    """The teacher cache or usage file could not be written (a full disk): the session stopped
    sending and the answers stored so far are kept. An OSError with the cause's errno (ENOSPC for
    SQLite's "database or disk is full"), so the CLI treats it as it treats any full disk: one
    line, exit 2. ``str()`` is that line."""

    def __init__(self, cause: BaseException, line: str) -> None:
        super().__init__(storage_errno(cause), line)

    def __str__(self) -> str:
        return str(self.strerror)


def storage_errno(exc: BaseException) -> int:
    """The errno of a failed write: SQLite's SQLITE_FULL is ENOSPC, its other errors EIO."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.ENOSPC if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" else errno.EIO


def finite_scores(scores: list[Any] | None) -> bool:
    """True when every expected score is a finite number or None (unknown)."""
    return all(s is None or (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s))
               for s in scores or [])


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    prompt_version TEXT NOT NULL,
    model TEXT NOT NULL,
    tag TEXT,
    ok INTEGER NOT NULL,
    raw TEXT,
    value_json TEXT,
    error TEXT,
    expected_scores TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    latency_s REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_model_version ON responses (model, prompt_version);
"""


@dataclass
class CachedResponse:
    key: str
    ok: bool
    raw: str | None
    value_json: str | None
    error: str | None
    expected_scores: list[float | None] | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    latency_s: float | None


class TeacherCache:
    """Thread-safe handle on the cache database (one connection, guarded by a lock)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, check_same_thread=False,
                                     isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        with self._lock:
            self._set_up(busy_timeout_s)

    def _set_up(self, busy_timeout_s: float) -> None:
        """WAL mode and the schema, retried while another connection is creating the same file.

        WAL lets readers proceed while another process writes; NORMAL sync is durable enough for a
        cache (a lost last answer is simply asked again). Switching a new file to WAL needs it to
        itself, and SQLite answers "database is locked" at once instead of waiting on the busy
        timeout when another connection is doing the same (a few percent of two-thread opens of a
        fresh file), so the switch is retried until the timeout. Every statement here is
        idempotent.
        """
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                if str(self._conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT key, ok, raw, value_json, error, expected_scores, prompt_tokens, completion_tokens,"
                " attempts, latency_s FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        scores = json.loads(row[5]) if row[5] else None
        ok = bool(row[1]) and finite_scores(scores)
        return CachedResponse(row[0], ok, row[2], row[3], row[4], scores, row[6], row[7], row[8], row[9])

    def has(self, keys: list[str]) -> set[str]:
        """The subset of `keys` already answered (in chunks: SQLite limits bound parameters)."""
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(key for key, scores in self._conn.execute(
                    f"SELECT key, expected_scores FROM responses WHERE ok = 1 AND key IN ({marks})", chunk)
                    if not scores or finite_scores(json.loads(scores)))
        return found

    def put(self, key: str, *, prompt_version: str, model: str, tag: str, ok: bool, raw: str | None,
            value: Any, error: str | None, expected_scores: list[float | None] | None,
            prompt_tokens: int, completion_tokens: int, attempts: int, latency_s: float | None) -> None:
        # allow_nan=False: NaN or Infinity is never written (ValueError), so never replayed.
        value_json = json.dumps(value, ensure_ascii=False, allow_nan=False) if value is not None else None
        scores = json.dumps(expected_scores, allow_nan=False) if expected_scores is not None else None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, prompt_version, model, tag, ok, raw, value_json, error,"
                " expected_scores, prompt_tokens, completion_tokens, attempts, latency_s, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, prompt_version, model, tag, int(ok), raw, value_json, error, scores, prompt_tokens,
                 completion_tokens, attempts, latency_s, time.time()))

    def mean_usage(self, model: str, prompt_version: str | None = None) -> dict[str, float] | None:
        """Measured averages (completion tokens, latency) of successful answers, for estimates."""
        query = ("SELECT COUNT(*), AVG(completion_tokens), AVG(latency_s), SUM(prompt_tokens) FROM responses"
                 " WHERE ok = 1 AND model = ?")
        params: list[Any] = [model]
        if prompt_version is not None:
            query += " AND prompt_version = ?"
            params.append(prompt_version)
        with self._lock:
            count, completion, latency, _ = self._conn.execute(query, params).fetchone()
        if not count:
            return None
        return {"count": count, "completion_tokens": completion or 0.0, "latency_s": latency or 0.0}

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
