"""The base of mira's typed configuration: the section model, the config error, record formats and
a source entry (shared by `sources` and `compare.eval_sets`). :mod:`mira.core.config` re-exports them."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMATS = ("text", "code", "qa", "chat", "agent")
Format = Literal["auto", "text", "code", "qa", "chat", "agent"]


class ConfigError(ValueError):
    """A configuration problem the user can fix; its message is one readable line."""


class Section(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in YAML is a typo or a trap (every comparison with NaN is
    # false, so a NaN bound bounds nothing); every float of every section must be finite.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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


def did_you_mean(name: str, known: Iterable[str], kind: str = "known", cutoff: float = 0.6) -> str:
    """"; did you mean 'x'?" for the known name closest to a mistyped `name` (difflib's ratio at least
    `cutoff`), else " (<kind>: the known names)"."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f" ({kind}: {shown or 'none'})"


# A source's name is a folder or file name in the run directory (scores/<source>/,
# selection/<name>/<source>/, quarantine/<source>.jsonl, ...), next to the files mira keeps there
# itself. The pattern keeps out path separators, ".", "..", and the "_"/"." prefixes of mira's own
# entries (_decisions, _current.json, .<name>.partial); these are the other names taken, compared
# without case since macOS and Windows file systems ignore it.
RESERVED_NAMES = frozenset({"summary.json"})
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Derived file names add up to ~20 characters (".<source>.jsonl.<8>.tmp", an ablation's
# "-without-<source>.<anchor>"), and a file name may have 255 bytes.
MAX_SOURCE_NAME = 128


def not_reserved(value: str | None) -> str | None:
    """`value` unless it is a name the run directory keeps for its own files."""
    if value is not None and value.lower() in RESERVED_NAMES:
        raise ValueError(f"{value!r} is the name of a file mira writes in the run directory; choose another name")
    return value


class SourceConfig(Section):
    """One input source: a file, a glob, or a directory; local or a URL (``s3://bucket/prefix/``)."""

    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_SOURCE_NAME)
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
    _name_not_reserved = field_validator("name")(not_reserved)
