"""The scorer as a library: a finished run's students applied to records of your own pipeline.

``Scorer.load(run_dir)`` reads what ``mira score`` reads (the run's saved config, ``groups.json``,
``inventory.json`` for each source's format, the students and the reliability masks) and
``score(records)`` renders and predicts through :func:`mira.scoring.apply.score_batch`, the function
``mira score`` calls, then aggregates with :func:`mira.scoring.table.aggregate_scores` under the
masks select ranks by. So a source's records scored here get exactly the numbers of
``scores/<source>/*.parquet`` and the aggregate of ``decisions/``.

A record is a dict with the fields of its source's files (after ``sources[].fields`` renaming, as
ingest reads them); a folder-of-files source's records are ``{"text": ..., "path": ...}``. Its
source is named by the caller (``source=``) or by the record's ``mira_source`` field. The result is a
pyarrow table, one row per input record in input order, with a fixed schema for the scorer (so
every batch of a Ray Data or datatrove pipeline has the same columns): ``id``, ``source``,
``group``, ``tokens``, ``quarantine`` (the reason a record cannot be scored, as in ``scores/``),
``score`` (the reliability-masked aggregate; NaN when quarantined or every anchor is masked) and
one ``<group>/<anchor>`` column per anchor of every group (NaN outside the record's group: anchor
ids are only unique within their group).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mira.core.config import RunConfig, SourceConfig
from mira.core.errors import ScorerError
from mira.corpus.records import Record
from mira.corpus.sources import Quarantined, to_record
from mira.io.readers import dict_item
from mira.run.rundir import RunDir
from mira.scoring.apply import NO_GROUP, LoadedGroup, StageModels, models_for, score_batch

log = logging.getLogger(__name__)

SOURCE_FIELD = "mira_source"  # the field naming a record's source when the caller names none
BASE = ("id", "source", "group", "tokens", "quarantine", "score")


@dataclass
class _Source:
    config: SourceConfig
    format: str
    group: str | None


@dataclass
class Scorer:
    """A finished run's students and masks, loaded once; :meth:`score` is cheap to call per batch."""

    run: RunDir
    config: RunConfig
    sources: dict[str, _Source]
    groups: dict[str, LoadedGroup]
    masks: dict[str, dict[str, Any] | None]
    _tokenizer: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: str | Path, *, config: RunConfig | None = None,
             models: StageModels | None = None) -> Scorer:
        """Load the students of the finished run at `run_dir` (distill done; under
        ``reliability.anchor_scale: group`` score done too, whose files give the anchor statistics).

        `config` replaces the run's saved ``config.yaml`` (e.g. other ``reliability`` thresholds: the
        masks follow them, as select's do). Raises :class:`mira.core.errors.StageNotReady` for a run
        that is not finished, :class:`mira.core.errors.ScorerError` for a folder that is no run."""
        from mira.corpus.sources import source_infos
        from mira.run.config_file import load_config
        from mira.scoring.corpus_scores import require_students, scores_fingerprint
        from mira.scoring.table import current_masks
        from mira.text.tokens import LazyTokenizer

        run = RunDir(Path(run_dir))
        if not (run.root.is_dir() and run.is_mira_run()):
            raise ScorerError(f"{run.root} is not a mira run directory (no run marker or done markers)")
        if config is None:
            if not run.config_path.exists():
                raise ScorerError(f"{run.root} has no config.yaml; pass config=")
            config = load_config(run.config_path)
        if config.resolved_run_dir().resolve() != run.root.resolve():  # the run was moved, or config= is another's
            config = config.model_copy(update={"run_dir": str(run.root.resolve())})
        run.require("distill")
        if config.reliability.anchor_scale == "group":
            run.require("score")  # the group's anchor statistics come from its score files
        require_students(run)
        models = models or StageModels(device=config.student.encoder_device)
        stage_fp = scores_fingerprint(config, run)
        infos = source_infos(run)
        source_groups = models.source_to_group(run)
        sources = {info.name: _Source(config.source(info.name), info.format, source_groups.get(info.name))
                   for info in infos}
        try:
            groups = {g: models_for(models, run, g, stage_fp) for g in sorted({s.group for s in sources.values()
                                                                                if s.group is not None})}
        except (OSError, ValueError) as exc:  # a student of another mira version, a damaged model file
            raise ScorerError(f"cannot load the students of {run.root}: {exc}") from None
        masks = current_masks(config, run, infos, {name: s.group for name, s in sources.items()})
        log.info("scorer loaded from %s: %d sources, %d groups", run.root, len(sources), len(groups))
        return cls(run, config, sources, groups, masks, LazyTokenizer(config.tokenizer.name))

    @property
    def anchors(self) -> dict[str, list[str]]:
        """Each group's anchor ids, in the order of its score columns."""
        return {g: list(loaded.anchors) for g, loaded in self.groups.items()}

    def schema(self) -> Any:
        """The schema of every table :meth:`score` returns."""
        import pyarrow as pa

        fields = [pa.field("id", pa.string()), pa.field("source", pa.string()), pa.field("group", pa.string()),
                  pa.field("tokens", pa.int64()), pa.field("quarantine", pa.string()),
                  pa.field("score", pa.float64())]
        fields += [pa.field(f"{g}/{a}", pa.float64()) for g, anchors in self.anchors.items() for a in anchors]
        return pa.schema(fields)

    def score(self, records: Any, *, source: str | None = None, source_field: str = SOURCE_FIELD,
              on_invalid: Literal["quarantine", "raise"] = "quarantine") -> Any:
        """Score `records` (dicts, or a pyarrow Table or RecordBatch); a pyarrow table of :meth:`schema`,
        one row per record in order.

        Each record's source is `source`, else its `source_field` (dropped before rendering). A record
        its source's format cannot read (missing or empty text field, a field of the wrong type) is
        quarantined with the reason, as ``mira score`` does; ``on_invalid="raise"`` raises instead.
        """
        import pyarrow as pa

        if on_invalid not in ("quarantine", "raise"):
            raise ScorerError(f"on_invalid must be 'quarantine' or 'raise', got {on_invalid!r}")
        rows = _as_dicts(records)
        names = self._source_names(rows, source, source_field)
        n = len(rows)
        ids: list[str | None] = [None] * n
        tokens = np.zeros(n, dtype=np.int64)
        quarantine: list[str | None] = [None] * n
        aggregate = np.full(n, np.nan)
        anchor_cols = {(g, a): np.full(n, np.nan) for g, anchors in self.anchors.items() for a in anchors}
        for name in sorted(set(names)):
            positions = [i for i, s in enumerate(names) if s == name]
            self._score_source(name, positions, rows, source is None and source_field, on_invalid,
                               ids, tokens, quarantine, aggregate, anchor_cols)
        groups = [self.sources[s].group for s in names]
        columns: dict[str, Any] = {"id": ids, "source": names, "group": groups, "tokens": tokens,
                                   "quarantine": quarantine, "score": aggregate}
        columns.update({f"{g}/{a}": values for (g, a), values in anchor_cols.items()})
        return pa.table(columns, schema=self.schema())

    def _source_names(self, rows: list[dict[str, Any]], source: str | None, source_field: str) -> list[str]:
        if source is not None:
            names = [source] * len(rows)
        else:
            names = []
            for i, row in enumerate(rows):
                name = row.get(source_field)
                if name is None:
                    raise ScorerError(f"record {i} has no {source_field!r} field: name its source with source=, "
                                      f"or add the field")
                if not isinstance(name, str):
                    raise ScorerError(f"record {i}: {source_field!r} must be a source name (text), "
                                      f"got {type(name).__name__}")
                names.append(name)
        unknown = sorted(set(names) - set(self.sources))
        if unknown:
            raise ScorerError(f"unknown source {unknown[0]!r}: the run's sources are {', '.join(self.sources)}")
        return names

    def _score_source(self, name: str, positions: list[int], rows: list[dict[str, Any]], drop: str | Literal[False],
                      on_invalid: str, ids: list[str | None], tokens: np.ndarray, quarantine: list[str | None],
                      aggregate: np.ndarray, anchor_cols: dict[tuple[str, str], np.ndarray]) -> None:
        import pyarrow as pa

        from mira.scoring.table import aggregate_scores

        info = self.sources[name]
        max_bytes, min_chars = self.config.ingest.max_record_bytes, self.config.ingest.min_chars
        items: list[Record | Quarantined] = []
        for i in positions:
            data = {k: v for k, v in rows[i].items() if k != drop} if drop else rows[i]
            item = to_record(dict_item(f"row {i}", data, max_bytes), info.config, info.format, min_chars)
            if isinstance(item, Quarantined) and on_invalid == "raise":
                raise ScorerError(f"record {i} (source {name}): {item.reason}")
            items.append(item)
        if info.group is None and any(isinstance(item, Record) for item in items):
            raise ScorerError(f"source {name} has no group (it had no usable record at ingest): "
                              "its records cannot be scored")
        loaded = self.groups.get(info.group, NO_GROUP) if info.group is not None else NO_GROUP
        size = self.config.engine.batch_size
        for start in range(0, len(items), size):
            batch, where = items[start:start + size], positions[start:start + size]
            batch_tokens, scores = score_batch(batch, loaded, self.config, self._tokenizer, info.group, name)
            for j, (i, item) in enumerate(zip(where, batch, strict=True)):
                own = None if isinstance(item, Record) else _own_id(rows[i], info.config)
                ids[i] = item.id if isinstance(item, Record) else own or f"{name}/{item.locator}"
                quarantine[i] = item.reason if isinstance(item, Quarantined) else None
                tokens[i] = batch_tokens[j]
                for k, anchor in enumerate(loaded.anchors):
                    anchor_cols[(str(info.group), anchor)][i] = scores[j, k]
        mask = self.masks.get(info.group) if info.group is not None else None
        if mask is not None and positions:
            # The aggregate as select computes it from a score file: the same function, the same columns.
            table = pa.table({"source": [name] * len(positions), "quarantine": [quarantine[i] for i in positions],
                              **{a: anchor_cols[(str(info.group), a)][positions] for a in mask["anchors"]}})
            aggregate[positions] = aggregate_scores(table, mask, self.config.reliability)


def _own_id(data: dict[str, Any], source: SourceConfig) -> str | None:
    """The id field of a record that could not be scored (as :func:`mira.corpus.records.make_record` reads
    it), so the caller can tell which record it was; None when it has none."""
    original = source.fields.get("id")
    value = data[original] if original is not None and original in data else data.get("id")
    return str(value) if isinstance(value, (str, int)) and str(value) else None


def _as_dicts(records: Any) -> list[dict[str, Any]]:
    """`records` as a list of dicts: a pyarrow Table or RecordBatch row by row (as ingest reads a Parquet
    source: ``to_pylist``), or an iterable of mappings."""
    if hasattr(records, "to_pylist") and hasattr(records, "schema"):
        return list(records.to_pylist())
    if isinstance(records, Mapping):
        raise ScorerError("records must be dicts or a pyarrow Table, got one mapping (a batch of columns?): "
                          "in Ray Data use map_batches(..., batch_format='pyarrow')")
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise ScorerError(f"records must be dicts or a pyarrow Table, got {type(records).__name__}")
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ScorerError(f"record {i} is {type(record).__name__}, not a dict of fields")
        out.append(dict(record))
    return out
