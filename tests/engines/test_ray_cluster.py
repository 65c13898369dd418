"""The Ray engine on a real two-node cluster (``ray start --head`` and a second node joining it),
both nodes on this machine, 1 CPU each; the second node declares one (fake) GPU.

mira's driver runs in a subprocess, as `mira` would: Ray keeps per-process state (an earlier
`ray.init` in this process switches its authentication mode), and the cluster's token must be in
the environment before Ray is imported. Slow (the cluster alone takes ~35 s to start on 2 cores):
`make test-cluster` runs this file; `make test` leaves it out.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mira.core.config import EngineConfig, RunConfig
from tests.engines.cluster import RayCluster, ray_cluster
from tests.engines.doubles import build_corpus, make_config, prepare_run, score_with_doubles, tree_bytes

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(600),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the nodes' processes in /proc")]
ROOT = Path(__file__).resolve().parents[2]
PER_NODE = re.compile(r"shards per node: (.*)")
DRIVER = """
import json, logging, sys
from pathlib import Path
from mira import api
from mira.core.config import ConfigError, RunConfig
from mira.scoring import corpus_scores
from tests.engines.doubles import DoubleModels, prepare_run

logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
logging.getLogger("mira.engines.ray").setLevel(logging.INFO)
corpus_scores.StageModels = DoubleModels
config = RunConfig.model_validate_json(Path(sys.argv[1]).read_text())
if "prepare" in sys.argv:
    prepare_run(config)  # ingest runs on the engine
if "encoder" in sys.argv:
    # DoubleModels loads the stand-in student whatever the kind; score decides the GPU request on it.
    for meta in Path(config.run_dir).glob("students/*/student.json"):
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "kind": "encoder"}))
try:
    print(json.dumps({"counts": api.run_one("score", config).counts}))
except ConfigError as error:
    print(json.dumps({"error": str(error)}))
"""


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    with ray_cluster({"num_cpus": 1}, {"num_cpus": 1, "num_gpus": 1, "resources": {"node2": 1}},
                     env={"PYTHONPATH": _pythonpath()}) as started:
        yield started
    assert not started.processes(), "ray processes outlived the cluster"


def _pythonpath() -> str:
    # The nodes' workers and the driver import mira and the stand-in students from this checkout.
    return os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH")]))


def _drive(cluster: RayCluster, config: RunConfig, *steps: str) -> tuple[dict[str, Any], list[dict[int, int]]]:
    """Run score (after `steps`) in a driver process joined to the cluster; return its JSON answer
    and each map_ray call's report of where its shards ran: {node index (0 = head): shards}."""
    path = Path(config.run_dir).with_suffix(".json")
    path.write_text(config.model_dump_json())
    done = subprocess.run([sys.executable, "-c", DRIVER, str(path), *steps], capture_output=True, text=True,
                          timeout=400, env={**os.environ, "PYTHONPATH": _pythonpath(), **cluster.driver_env()})
    assert done.returncode == 0 and done.stdout.strip(), done.stderr[-4000:]
    per_node = []
    for match in PER_NODE.finditer(done.stderr):
        counts = dict(item.rsplit(" ", 1) for item in match.group(1).split(", "))
        per_node.append({next(i for i, node in enumerate(cluster.node_ids) if node.startswith(prefix)): int(n)
                         for prefix, n in counts.items()})
    return json.loads(done.stdout.strip().splitlines()[-1]), per_node


def _outputs(run: Path) -> dict[str, bytes]:
    """What the stages wrote, minus the run's bookkeeping: the saved config and the stage markers
    name the engine, the run directory and the time (their fingerprints are compared apart)."""
    return {name: data for name, data in tree_bytes(run).items()
            if not name.startswith(("config.yaml", ".mira-run", "_done/"))}


def _fingerprints(run: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["fingerprint"] for p in sorted((run / "_done").glob("*.json"))}


def test_ingest_and_score_run_on_both_nodes_with_the_local_engines_bytes(cluster, tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    score_with_doubles(make_config(corpus, tmp_path / "local", engine=EngineConfig(workers=1)))

    distributed = make_config(corpus, tmp_path / "ray", engine=EngineConfig(kind="ray", address=cluster.address))
    answer, (ingest, score) = _drive(cluster, distributed, "prepare")
    assert answer["counts"]["records"] == 80 and answer["counts"]["shards_skipped"] == 0
    # Both nodes got work in both stages; every shard ran once.
    assert set(ingest) == {0, 1} and set(score) == {0, 1}, (ingest, score)
    assert sum(score.values()) == answer["counts"]["shards"]
    local, remote = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert {name.split("/")[0] for name in remote} >= {"inventory", "scores", "quarantine"}
    assert remote.keys() == local.keys()
    assert [name for name in remote if remote[name] != local[name]] == []
    assert _fingerprints(tmp_path / "ray") == _fingerprints(tmp_path / "local")


def test_encoder_score_workers_ask_for_gpus_and_run_on_the_node_that_has_them(cluster, tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(kind="ray", address=cluster.address,
                                                                       gpus_per_worker=1))
    answer, per_call = _drive(cluster, config, "prepare", "encoder")
    assert answer["counts"]["records"] == 80
    ingest, score = per_call
    assert set(ingest) == {0, 1}  # ingest asks for no GPU: both nodes
    assert score == {1: answer["counts"]["shards"]}  # one GPU, on node 2: one actor there, every shard


def test_a_gpu_request_the_cluster_cannot_meet_is_a_one_line_error_not_a_hang(cluster, tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(kind="ray", address=cluster.address,
                                                                       gpus_per_worker=2))
    prepare_run(make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=1)))
    answer, _ = _drive(cluster, config, "encoder")
    assert answer["error"].startswith("engine.gpus_per_worker is 2 but the Ray cluster has 1 GPUs (resources: CPU 2,")
    assert "\n" not in answer["error"]
    assert not list((tmp_path / "run" / "scores").rglob("*.done.json"))
