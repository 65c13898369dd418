"""A datatrove pipeline step that scores documents with a finished mira run (``mira-select[datatrove]``).

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from mira.integrations.datatrove import MiraScorer

    LocalPipelineExecutor(pipeline=[
        JsonlReader("data/python_docs/"),
        MiraScorer("runs/demo", source="python_docs"),
        LambdaFilter(lambda doc: doc.metadata["mira_score"] >= 6),  # NaN (unscored) never passes
        ...
    ]).run()

Each document becomes the record its source's files hold: its metadata fields, with ``doc.text``
under `text_key` and ``doc.id`` under `id_key` (the names datatrove's readers took them from), and is
scored by :meth:`mira.Scorer.score`. The step adds ``mira_score`` (the reliability-masked aggregate
select ranks by; NaN when quarantined or every anchor is masked), ``mira_group``, ``mira_tokens``,
``mira_quarantine`` (why it could not be scored, else None) and ``mira_anchors`` ({anchor: score} of
its group) to ``doc.metadata`` and passes every document on: nothing is dropped here.

The scorer is loaded on the first document of each task (a step is pickled to every worker), so
the run directory must be readable where the tasks run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

try:
    from datatrove.data import Document, DocumentsPipeline
    from datatrove.pipeline.base import PipelineStep
    from datatrove.utils.batching import batched
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(f"mira.integrations.datatrove needs datatrove ({exc}): "
                      "pip install 'mira-select[datatrove]'") from None

from mira.scoring.scorer import SOURCE_FIELD, Scorer

METADATA = ("mira_score", "mira_group", "mira_tokens", "mira_quarantine", "mira_anchors")


class MiraScorer(PipelineStep):
    """Adds mira's scores to each document's metadata (see the module docstring)."""

    name = "mira scorer"
    type = "SCORER"

    def __init__(self, run_dir: str, source: str | None = None, *, source_key: str = SOURCE_FIELD,
                 text_key: str = "text", id_key: str = "id", batch_size: int = 512) -> None:
        super().__init__()
        self.run_dir, self.source, self.source_key = str(run_dir), source, source_key
        self.text_key, self.id_key, self.batch_size = text_key, id_key, batch_size
        self._scorer: Scorer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scorer": None}  # workers load their own

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer.load(self.run_dir)
        return self._scorer

    def record(self, doc: Document) -> dict[str, Any]:
        """The record a document was read from: its metadata, its text and its id under their field names."""
        return {**doc.metadata, self.text_key: doc.text, self.id_key: doc.id}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data is None:
            return
        for batch in batched(data, self.batch_size):
            with self.track_time(unit="batch"):
                result = self.scorer.score([self.record(doc) for doc in batch], source=self.source,
                                           source_field=self.source_key).to_pylist()
            anchors = self.scorer.anchors
            for doc, row in zip(batch, result, strict=True):
                group = row["group"]
                doc.metadata.update(
                    mira_score=row["score"], mira_group=group, mira_tokens=row["tokens"],
                    mira_quarantine=row["quarantine"],
                    mira_anchors={a: row[f"{group}/{a}"] for a in anchors.get(group, [])} if group else {})
                self.stat_update("quarantined" if row["quarantine"] else
                                 "unscored" if math.isnan(row["score"]) else "scored")
                self.update_doc_stats(doc)
                yield doc
