"""annotate through teacher.mode: batch writes the labels the direct path writes, from the same answers."""

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mira.pipeline.runner import run_stage
from mira.rubrics import annotation
from mira.run.context import StageContext
from mira.teacher.testing import ScriptedServer
from mira.teacher.testing_batch import BatchServer
from tests.stages.test_annotate import ANCHORS
from tests.stages.test_annotate_v3 import _configure, _prepare, handler

FAST = {"poll_interval_s": 0.01, "max_poll_interval_s": 0.05}


def _labels(run) -> dict:
    return {(group, again): pq.read_table(annotation.labels_path(run, group, again)).to_pylist()
            for group in ANCHORS for again in (False, True)}


def _cache(run) -> dict:
    with sqlite3.connect(run.teacher_cache_path) as conn:
        return {row[0]: row[1:] for row in conn.execute("SELECT key, raw, value_json, expected_scores FROM responses")}


@pytest.mark.slow
def test_annotate_in_batch_mode_writes_the_direct_labels_and_replays_the_same_cache(mixed_config):
    batch_config = mixed_config.model_copy(deep=True)
    batch_config.run_dir = str(Path(mixed_config.run_dir).parent / "batch-run")
    with ScriptedServer(handler) as server:
        direct_run = _prepare(_configure(mixed_config, server))
        direct = run_stage("annotate", StageContext(mixed_config, direct_run))
    with BatchServer(handler) as server:
        batch_run = _prepare(_configure(batch_config, server, mode="batch", batch=FAST))
        batched = run_stage("annotate", StageContext(batch_config, batch_run))
        # One batch for every group's requests, then one per re-ask of the invalid answer (`this.py` on a01).
        assert len(server.created) == 1 + batch_config.teacher.max_parse_retries
        assert len(server.requests) == len(server.lines)  # nothing went through chat completions
    assert _labels(batch_run) == _labels(direct_run)
    assert _cache(batch_run) == _cache(direct_run)
    assert batched.counts == direct.counts and batched.counts["failed"] >= 1

    # The direct run's cache, asked in batch mode: only the failed request travels again.
    with BatchServer(handler) as server:
        _configure(mixed_config, server, mode="batch", batch=FAST)
        run_stage("annotate", StageContext(mixed_config, direct_run, force=True))
        assert server.lines and all("path: this.py" in b["messages"][-1]["content"] for b in server.lines)
    assert _labels(direct_run) == _labels(batch_run)
