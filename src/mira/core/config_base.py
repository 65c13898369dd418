"""The base of mira's typed configuration: the section model, the config error, record formats and
a source entry (shared by `sources` and `compare.eval_sets`). :mod:`mira.core.config` re-exports them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMATS = ("text", "code", "qa", "chat", "agent")
Format = Literal["auto", "text", "code", "qa", "chat", "agent"]


class ConfigError(ValueError):
    """A configuration problem the user can fix; its message is one readable line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def no_credentials(value: str | None) -> str | None:
    """A URL (source, selection.output) must not carry secrets: the config is saved with the run."""
    from urllib.parse import urlsplit

    if value and _URL.match(value):
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None or parts.query:
            raise ValueError("a URL here must carry no credentials or query; put credentials in the environment "
                             "(see storage.<protocol>.options_from_env)")
    return value


def cell_entries(value: list[str], where: str) -> list[str]:
    """`value` if every entry names (source, anchor) cells as "source/anchor" ("*" for any)."""
    bad = [v for v in value if v.count("/") != 1 or "" in v.split("/")]
    if bad:
        raise ValueError(f"{where} entries are 'source/anchor' ('*' for any), not {', '.join(bad)}")
    return value


class SourceConfig(Section):
    """One input source: a file, a glob, or a directory; local or a URL (``s3://bucket/prefix/``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str
    reader: Literal["auto", "jsonl", "parquet", "files"] = "auto"
    format: Format = "auto"
    # For the `files` reader (one record per file): which files to take, e.g. "**/*.py".
    include: str = "**/*"
    # Rename fields to the names the renderers know, e.g. {"text": "content"}.
    fields: dict[str, str] = Field(default_factory=dict)
    # Pin this source to a named group instead of letting grouping decide.
    group: str | None = None

    _path_has_no_credentials = field_validator("path")(no_credentials)
