import os
import sys

import pytest

from mira import api
from mira.config import ConfigError, EngineConfig
from mira.engines import map_tasks, worker_count
from mira.stages import score as score_stage
from tests.engines.doubles import DoubleModels, build_corpus, make_config, prepare_run, tree_bytes


def _pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def test_local_engine_returns_every_result_with_its_index_from_spawned_workers():
    results = dict(map_tasks(EngineConfig(workers=2), _pid_and_square, [(i,) for i in range(9)]))
    assert sorted(results) == list(range(9))
    assert [results[i][1] for i in range(9)] == [i * i for i in range(9)]
    assert os.getpid() not in {pid for pid, _ in results.values()}  # really ran in worker processes


def test_local_engine_with_one_worker_runs_inline_and_propagates_errors():
    results = dict(map_tasks(EngineConfig(workers=1), _pid_and_square, [(2,), (3,)]))
    assert results == {0: (os.getpid(), 4), 1: (os.getpid(), 9)}
    with pytest.raises(ValueError, match="three"):
        dict(map_tasks(EngineConfig(workers=2), _fail_on_three, [(i,) for i in range(6)]))


def test_worker_count_never_exceeds_the_tasks():
    assert worker_count(EngineConfig(workers=8), 3) == 3
    assert worker_count(EngineConfig(workers=None), 1) == 1


def test_ray_engine_without_ray_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install mira\[ray\]"):
        dict(map_tasks(EngineConfig(kind="ray"), _pid_and_square, [(1,)]))


@pytest.mark.timeout(180)
def test_ray_engine_gives_the_same_scores_as_the_local_engine(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from tests.engines import doubles

    monkeypatch.setattr(score_stage, "StageModels", DoubleModels)
    # Ray workers import the stand-in student by name: make the repository root importable.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(doubles.__file__))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    corpus = build_corpus(tmp_path / "corpus")
    local = make_config(corpus, tmp_path / "local", engine=EngineConfig(workers=1))
    prepare_run(local)
    api.run_one("score", local)

    distributed = make_config(corpus, tmp_path / "ray", engine=EngineConfig(kind="ray", workers=2))
    prepare_run(distributed)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = api.run_one("score", distributed)
    finally:
        ray.shutdown()
    assert outcome.counts["records"] == 80 and outcome.counts["shards_skipped"] == 0
    assert tree_bytes(tmp_path / "ray" / "scores") == tree_bytes(tmp_path / "local" / "scores")
