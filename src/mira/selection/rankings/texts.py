"""Record texts for the rankings that read the corpus itself (dsir, perplexity).

A record's text is every rendered section joined (the whole record, no windows): the n-gram
baselines judge what a record contains, not the window the teacher saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mira.core.config import ConfigError, RunConfig


def record_text(record: Any) -> str:
    from mira.corpus.records import render_sections

    return "\n\n".join(text for _, text in render_sections(record))


def jsonl_texts(path: Path, setting: str) -> Iterator[str]:
    """The ``text`` field of every line of a user's JSONL (a bare JSON string also counts);
    `setting` names the config field in the one-line error."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {setting} {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"{setting} {path}:{number} is not valid JSON") from None
            text = value.get("text") if isinstance(value, dict) else value
            if isinstance(text, str):
                yield text


def shard_texts(config: RunConfig, info: Any, shard: Any) -> Iterator[str | None]:
    """One item per input row of the shard, in order: the record's text, None if quarantined."""
    from mira.corpus.records import Record
    from mira.corpus.sources import iter_shard_records

    source = config.source(info.name)
    for item in iter_shard_records(config, source, shard, info.format):
        yield record_text(item) if isinstance(item, Record) else None


def corpus_texts(config: RunConfig, infos: list[Any]) -> Iterator[tuple[int, str]]:
    """(row in the score table, full record text) of every usable record, in table order."""
    row = 0
    for info in infos:
        for shard in info.shards:
            for text in shard_texts(config, info, shard):
                if text is not None:
                    yield row, text
                row += 1
