"""mira.Scorer on a run with trained students: a whole scripted run (tests/test_pipeline.py's teacher),
then every source's records scored by the library give the bytes of scores/ and the keys select ranked by."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mira
from mira import api
from mira.artifacts import CATALOGUE
from mira.run.rundir import RunDir
from mira.selection.named import current_selection
from tests.test_pipeline import DATA, _config, schema_teacher


@pytest.mark.slow
def test_scorer_on_a_finished_run_gives_its_score_files_and_select_keys(tmp_path):
    from mira.teacher.testing import ScriptedServer

    with ScriptedServer(schema_teacher) as server:
        config = _config(tmp_path, server.teacher_config())
        api.run_pipeline(config, until="select")
    run = RunDir(tmp_path / "run")
    selection = current_selection(run).name
    scorer = mira.Scorer.load(run.root)  # the real students, the run's saved config
    assert set(scorer.sources) == {s.name for s in config.sources}
    compared = 0
    for source in config.sources:
        records = [json.loads(line) for line in (DATA / f"{source.name}.jsonl").read_text().splitlines()]
        result = scorer.score(records, source=source.name)
        files = sorted((run.root / "scores" / source.name).glob("*.parquet"))
        expected = pa.concat_tables(pq.read_table(p) for p in files)
        group = expected.column("group")[0].as_py()
        assert result.column("group").to_pylist() == [group] * len(records)
        assert result.column("id").to_pylist() == expected.column("id").to_pylist()
        assert result.column("tokens").to_pylist() == expected.column("tokens").to_pylist()
        assert result.column("quarantine").to_pylist() == expected.column("quarantine").to_pylist()
        for anchor in scorer.anchors[group]:
            assert (result.column(f"{group}/{anchor}").to_numpy().tobytes()
                    == expected.column(anchor).to_numpy().tobytes())
        decisions = pa.concat_tables(CATALOGUE["decisions"].load(run, name=selection, source=source.name,
                                                                 shard=p.stem) for p in files)
        keys = decisions.column("key").to_numpy(zero_copy_only=False).astype(float)  # None -> NaN
        assert result.column("score").to_numpy().tobytes() == keys.tobytes()
        compared += len(records)
    assert compared == json.loads(run.inventory_path.read_text())["totals"]["records"]
