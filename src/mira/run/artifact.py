"""What an artifact is: a path pattern in the run directory, the stage that writes it, a schema,
and the one `load` / `save` pair every reader and writer goes through.

A JSON artifact's schema is a pydantic model (extra fields are kept: a writer may record more than
its readers need, and a newer writer's file still loads); a JSONL artifact's schema is the model
of one line; a Parquet artifact's schema is an Arrow schema of its fixed columns (the per-anchor
columns depend on the rubric). Opaque artifacts (model files, the teacher cache, the HTML report)
are listed for the contract, but have an owner module of their own instead of `load` / `save`.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from mira.core.config import ConfigError
from mira.core.errors import StageNotReady
from mira.core.hashing import json_default
from mira.io.files import atomic_path, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


class RunRoot(Protocol):
    """What an artifact needs of a run directory: its root (:class:`mira.run.rundir.RunDir` has it)."""

    @property
    def root(self) -> Path: ...


class ArtifactMissing(StageNotReady):
    """The artifact's file is not there: its stage has not run (one line naming the command)."""


class ArtifactInvalid(ConfigError):
    """The artifact's file is there but does not match its schema (one line naming the file and
    field). A ConfigError, like a bad rubric edit: the CLI shows the line and exits 2."""


@dataclass(frozen=True)
class Artifact:
    """One kind of file in the run directory and its contract.

    ``pattern`` is relative to the run root, with ``{placeholders}`` (``{group}``, ``{source}``,
    ``{shard}``, ``{stage}``, ``{name}``) filled from the keyword arguments of :meth:`path`,
    :meth:`load` and :meth:`save`.
    """

    key: str
    pattern: str
    writer: str
    content: str
    kind: str = "json"  # json | jsonl | parquet | opaque
    model: type[BaseModel] | None = None  # json: the document; jsonl: one line
    arrow: Callable[[], Any] | None = None  # parquet: the Arrow schema of the fixed columns
    owner: str = ""  # opaque artifacts: the module that reads and writes them
    requires: str = ""  # the stage to run when it is missing (default: the writer)
    parser: Callable[[Path], Any] | None = None  # a format of its own (config.yaml)
    # Parquet: the writer's compression. Part of the bytes, and some files are hashed into
    # fingerprints (labels -> distill's train key), so the catalogue keeps what the writer used.
    compression: str = "snappy"
    # Names of another artifact that the pattern would also match (rubrics/<group>.jsonl vs
    # rubrics/<group>.rejected.jsonl): left out of :meth:`instances`.
    not_suffixes: tuple[str, ...] = ()

    # --- paths ------------------------------------------------------------------------------
    @property
    def placeholders(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.pattern) if name]

    def path(self, run: RunRoot, **keys: str) -> Path:
        return run.root / self.pattern.format(**keys)

    def exists(self, run: RunRoot, **keys: str) -> bool:
        return self.path(run, **keys).exists()

    def regex(self, **fixed: str) -> str:
        """The pattern as a regex over run-relative POSIX paths (a folder pattern: anything under it)."""
        import re

        regex = re.escape(self.pattern)
        for name in self.placeholders:
            value = re.escape(fixed[name]) if name in fixed else rf"(?P<{name}>[^/]+)"
            regex = regex.replace(re.escape("{" + name + "}"), value, 1)
        return regex + (".+" if self.pattern.endswith("/") else "")

    def matches(self, relative: str) -> bool:
        import re

        return re.fullmatch(self.regex(), relative) is not None and not relative.endswith(self.not_suffixes or ("\0",))

    def instances(self, run: RunRoot, **fixed: str) -> list[dict[str, str]]:
        """The placeholder values of every file of this artifact in the run (sorted), e.g. every
        ``{source, shard}`` of the score shards; ``fixed`` pins some of them. Names starting with
        ``.`` or ``_`` (temporary files, pointers) are not instances."""
        import re

        glob = self.pattern.format(**{n: fixed.get(n, "*") for n in self.placeholders})
        regex = self.regex(**fixed)
        found = []
        for path in sorted(run.root.glob(glob)):
            relative = path.relative_to(run.root).as_posix()
            match = re.fullmatch(regex, relative)
            if match is None or (self.not_suffixes and relative.endswith(self.not_suffixes)):
                continue
            keys = {**fixed, **match.groupdict()}
            if not any(v.startswith((".", "_")) for n, v in keys.items() if n not in fixed):
                found.append(keys)
        return found

    # --- reading ----------------------------------------------------------------------------
    def load(self, run: RunRoot, **keys: str) -> Any:
        """The artifact, validated; ArtifactMissing / ArtifactInvalid (one line) otherwise."""
        path = self.path(run, **keys)
        if not path.exists():
            stage = self.requires or self.writer.split()[0]
            raise ArtifactMissing(f"no {path.relative_to(run.root).as_posix()} in {run.root}; "
                                  f"run `mira {stage}` first")
        try:
            return self.parse(path)
        except (OSError, ValueError) as exc:
            raise ArtifactInvalid(f"{path}: {_one_line(exc)}") from None

    def read(self, run: RunRoot, **keys: str) -> Any:
        """Like :meth:`load`, but None when missing or invalid (logged): for readers such as the
        report that show "not run yet" instead of stopping."""
        try:
            return self.load(run, **keys)
        except ArtifactMissing:
            return None
        except ArtifactInvalid as exc:
            log.warning("cannot read %s", exc)
            return None

    def parse(self, path: Path) -> Any:
        if self.parser is not None:
            return self.parser(path)
        if self.kind == "json":
            assert self.model is not None
            return self.model.model_validate_json(path.read_bytes())
        if self.kind == "jsonl":
            assert self.model is not None
            return [self._line(line, path, number)
                    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                    if line.strip()]
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            check_columns(table.schema, self.arrow() if self.arrow else None)
            return table
        raise TypeError(f"{self.key} is read by {self.owner}, not by the catalogue")

    def _line(self, line: str, path: Path, number: int) -> BaseModel:
        assert self.model is not None
        try:
            return self.model.model_validate_json(line)
        except ValidationError as exc:
            raise ValueError(f"line {number}: {_one_line(exc)}") from None

    # --- writing ----------------------------------------------------------------------------
    def save(self, run: RunRoot, value: Any, **keys: str) -> Path:
        """Write the artifact atomically (temporary name, then rename); returns its path."""
        path = self.path(run, **keys)
        if self.kind == "json":
            assert self.model is not None
            doc = value if isinstance(value, self.model) else self.model.model_validate(value)
            atomic_write_json(path, dump(doc))
        elif self.kind == "jsonl":
            assert self.model is not None
            rows = [v if isinstance(v, self.model) else self.model.model_validate(v) for v in value]
            atomic_write_text(path, "".join(json.dumps(dump(r), ensure_ascii=False) + "\n" for r in rows))
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            check_columns(value.schema, self.arrow() if self.arrow else None)
            with atomic_path(path) as tmp:
                pq.write_table(value, str(tmp), compression=self.compression)
        else:
            raise TypeError(f"{self.key} is written by {self.owner}, not by the catalogue")
        return path

    @property
    def schema_name(self) -> str:
        if self.model is not None:
            name = f"{self.model.__module__}.{self.model.__qualname__}"
            return f"`{name}`" + (" per line" if self.kind == "jsonl" else "")
        if self.arrow is not None:
            return f"Arrow `{self.arrow.__module__}.{self.arrow.__qualname__}()`"
        return f"opaque (`{self.owner}`)" if self.owner else "opaque"


def dump(model: BaseModel, as_read: bool = False) -> dict[str, Any]:
    """A model as the JSON it is stored as: by alias, extra fields kept. `as_read`: only the fields
    the file held (a validated view of an older file, without the defaults of newer fields)."""
    # Python mode, then JSON with the run directory's encoder: counts a stage returns may hold
    # numpy scalars or paths, which pydantic's JSON mode refuses inside `Any` fields.
    value = model.model_dump(by_alias=True, exclude_unset=as_read)
    return json.loads(json.dumps(value, default=json_default))


def check_columns(schema: Any, expected: Any) -> None:
    """Every fixed column of `expected` is present with a compatible type (null columns pass)."""
    if expected is None:
        return
    import pyarrow as pa

    for column in expected:
        if column.name not in schema.names:
            raise ValueError(f"missing column {column.name!r}")
        actual = schema.field(column.name).type
        if actual != column.type and not pa.types.is_null(actual) and not _compatible(actual, column.type):
            raise ValueError(f"column {column.name!r} is {actual}, expected {column.type}")


def _compatible(actual: Any, expected: Any) -> bool:
    import pyarrow as pa

    kinds: Sequence[Callable[[Any], bool]] = (pa.types.is_integer, pa.types.is_floating, pa.types.is_string,
                                              pa.types.is_large_string, pa.types.is_boolean)
    return any(kind(actual) and kind(expected) for kind in kinds) or \
        (pa.types.is_integer(actual) and pa.types.is_floating(expected))


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"field {where!r}: {err['msg']}" if where else err["msg"]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class Catalogue:
    """Every artifact, in the order of the run (the rows of docs/architecture.md's table)."""

    artifacts: list[Artifact] = field(default_factory=list)

    def __iter__(self) -> Any:
        return iter(self.artifacts)

    def __getitem__(self, key: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.key == key:
                return artifact
        raise KeyError(f"no artifact {key!r}; known: {', '.join(a.key for a in self.artifacts)}")

    def owner_of(self, relative: str) -> Artifact | None:
        """The artifact a run-relative path belongs to: a file pattern before a folder pattern."""
        files = [a for a in self.artifacts if not a.pattern.endswith("/")]
        folders = [a for a in self.artifacts if a.pattern.endswith("/")]
        return next((a for a in files + folders if a.matches(relative)), None)

    def markdown(self) -> str:
        """The artifact table of docs/architecture.md."""
        lines = ["| path | written by | schema | content |", "|---|---|---|---|"]
        for a in self.artifacts:
            lines.append(f"| `{a.pattern}` | {a.writer} | {a.schema_name} | {a.content} |")
        return "\n".join(lines) + "\n"
