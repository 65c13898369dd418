import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mira import api
from mira.core.config import ConfigError, EngineConfig
from mira.engines import map_tasks, worker_count
from mira.scoring import corpus_scores
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


def test_forkserver_workers_start_with_the_worker_modules_imported(monkeypatch):
    from mira.engines.local import WORKER_MODULES, start_fork_server
    from tests.engines.probe import environ, loaded

    engine = EngineConfig(workers=2, start_method="forkserver")
    start_fork_server(engine, 4)  # as ingest and score do, before their own set-up
    results = dict(map_tasks(engine, loaded, [(WORKER_MODULES,)] * 4))
    assert os.getpid() not in {pid for pid, _ in results.values()}
    installed = {name: importlib.util.find_spec(name.split(".")[0]) is not None for name in WORKER_MODULES}
    for _, modules in results.values():
        assert modules == installed and sum(installed.values()) >= len(WORKER_MODULES) - 1
    # Spawned workers import them themselves (the probe imports none of them).
    spawned = dict(map_tasks(EngineConfig(workers=2, start_method="spawn"), loaded, [(("scipy.sparse",),)] * 2))
    assert [m["scipy.sparse"] for _, m in spawned.values()] == [False, False]
    # A variable set after the server started (credentials, a cache folder) reaches the workers.
    monkeypatch.setenv("MIRA_TEST_PROBE", "set-later")
    assert set(dict(map_tasks(engine, environ, [("MIRA_TEST_PROBE",)] * 3)).values()) == {"set-later"}


def test_no_fork_server_is_started_for_work_that_runs_in_the_driver():
    # One task (a one-shard corpus) runs in the driver: a server would only import for nothing.
    probe = ("from multiprocessing import forkserver\n"
             "from mira.core.config import EngineConfig\n"
             "from mira.engines import start_workers_early\n"
             "start_workers_early(EngineConfig(workers=2), 1)\n"
             "print(forkserver._forkserver._forkserver_pid)\n"
             "start_workers_early(EngineConfig(workers=2), 2)\n"
             "print(forkserver._forkserver._forkserver_pid is not None)\n")
    out = subprocess.run([sys.executable, "-c", probe], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "True"], out.stderr


def test_worker_count_never_exceeds_the_tasks():
    assert worker_count(EngineConfig(workers=8), 3) == 3
    assert worker_count(EngineConfig(workers=None), 1) == 1


def test_ray_engine_without_ray_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install mira\[ray\]"):
        dict(map_tasks(EngineConfig(kind="ray"), _pid_and_square, [(1,)]))


def test_ray_actors_fit_the_cluster_and_a_gpu_request_it_cannot_meet_is_a_one_line_error():
    from mira.engines.ray import actor_count

    # One actor a CPU, never more than the tasks or engine.workers: Ray would leave the rest pending.
    assert actor_count(EngineConfig(), {"CPU": 2.0, "memory": 1e9}, 10, 0.0) == 2
    assert actor_count(EngineConfig(workers=8), {"CPU": 4.0}, 3, 0.0) == 3
    assert actor_count(EngineConfig(workers=1), {"CPU": 4.0}, 3, 0.0) == 1
    # GPU workers: as many as the GPUs hold (fractions share one).
    assert actor_count(EngineConfig(), {"CPU": 8.0, "GPU": 2.0}, 10, 1.0) == 2
    assert actor_count(EngineConfig(), {"CPU": 8.0, "GPU": 1.0}, 10, 0.5) == 2
    assert actor_count(EngineConfig(), {"CPU": 8.0, "GPU": 0.9}, 10, 0.3) == 3
    with pytest.raises(ConfigError, match=r"^engine.gpus_per_worker is 1 but the Ray cluster has 0 GPUs "
                                          r"\(resources: CPU 2, node2 1\); set engine.gpus_per_worker=0") as error:
        actor_count(EngineConfig(), {"CPU": 2.0, "node2": 1.0, "node:127.0.0.1": 1.0}, 10, 1.0)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="has no CPU"):
        actor_count(EngineConfig(), {"GPU": 1.0}, 10, 0.0)


class _FakeRay:
    """Just enough of Ray's API for map_ray, run in this process: records each actor's options."""

    def __init__(self, resources: dict[str, float]) -> None:
        self.resources, self.options_seen, self.killed = resources, [], 0

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def remote(self, cls):
        fake = self

        class Handle:
            def options(self, **options):
                fake.options_seen.append(options)
                return self

            def remote(self, *args):
                actor = cls(*args)
                return type("Actor", (), {name: type("Method", (), {"remote": staticmethod(method)})
                                          for name, method in (("node", lambda: "node-a"), ("run", actor.run))})

        return Handle()

    def get(self, refs):
        return refs

    def wait(self, refs, num_returns):
        return refs[:num_returns], refs[num_returns:]

    def kill(self, actor):
        self.killed += 1


def test_ray_workers_carry_the_gpu_request_in_their_options(monkeypatch):
    fake = _FakeRay({"CPU": 4.0, "GPU": 2.0})
    monkeypatch.setitem(sys.modules, "ray", fake)
    results = dict(map_tasks(EngineConfig(kind="ray"), _pid_and_square, [(i,) for i in range(5)], gpus=1.0))
    assert {i: square for i, (_, square) in results.items()} == {i: i * i for i in range(5)}
    assert fake.options_seen == [{"num_cpus": 1, "num_gpus": 1.0, "scheduling_strategy": "SPREAD", "max_restarts": 0}]
    assert fake.killed == 2  # two GPUs: two actors, both gone once the work is done
    fake.options_seen.clear()
    dict(map_tasks(EngineConfig(kind="ray"), _pid_and_square, [(1,)]))
    assert fake.options_seen[0]["num_gpus"] == 0.0
    with pytest.raises(ConfigError, match="has 2 GPUs"):
        dict(map_tasks(EngineConfig(kind="ray"), _pid_and_square, [(1,)], gpus=3.0))


def test_score_workers_ask_for_gpus_only_where_a_student_is_the_encoder(tmp_path):
    from mira.io.files import atomic_write_json
    from mira.run.rundir import RunDir
    from mira.scoring.corpus_scores import worker_gpus

    run = RunDir(tmp_path)
    config = make_config([], tmp_path, engine=EngineConfig(kind="ray", gpus_per_worker=0.5))
    groups = {"web": "g0", "code": "g1"}
    for group in ("g0", "g1"):
        atomic_write_json(run.path("students", group, "student.json"), {"kind": "static", "anchors": []})
    assert worker_gpus(config, run, groups) == 0.0  # static students never use a GPU
    atomic_write_json(run.path("students", "g1", "student.json"), {"kind": "encoder", "anchors": []})
    assert worker_gpus(config, run, groups) == 0.5
    assert worker_gpus(make_config([], tmp_path, engine=EngineConfig(kind="ray")), run, groups) == 0.0
    assert worker_gpus(config, run, {"web": "g0"}) == 0.0  # only the groups being scored count


def test_gpus_per_worker_is_a_typed_setting():
    from mira.run.config_file import load_config

    assert load_config(overrides=["engine.gpus_per_worker=0.5"]).engine.gpus_per_worker == 0.5
    with pytest.raises(ValueError, match="gpus_per_worker"):
        load_config(overrides=["engine.gpus_per_worker=-1"])


@pytest.mark.slow  # ~20 s here: a local Ray start
@pytest.mark.timeout(180)
def test_ray_engine_gives_the_same_scores_as_the_local_engine(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from tests.engines import doubles

    monkeypatch.setattr(corpus_scores, "StageModels", DoubleModels)
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


@pytest.mark.slow  # ~100 s here: a local Ray start plus two scoring runs
@pytest.mark.timeout(300)
def test_ray_engine_scores_sources_in_a_bucket_as_the_local_engine_scores_them_on_disk(tmp_path, monkeypatch, s3):
    """The distributed path of the README: Ray actors read shards straight from object storage
    (byte ranges of JSONL objects, a prefix of files), credentials from the environment."""
    pytest.importorskip("ray")
    import ray

    from tests.engines import doubles

    monkeypatch.setattr(corpus_scores, "StageModels", DoubleModels)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(doubles.__file__))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    corpus = build_corpus(tmp_path / "corpus")
    local = make_config(corpus, tmp_path / "local", engine=EngineConfig(workers=1))
    prepare_run(local)
    api.run_one("score", local)

    remote_corpus = []
    for source in corpus:
        path = Path(source["path"])
        for file in sorted(path.iterdir()) if path.is_dir() else [path]:
            s3.upload(file, f"corpus/{path.name}/{file.name}" if path.is_dir() else f"corpus/{file.name}")
        remote_corpus.append({**source, "path": s3.url(f"corpus/{path.name}" + ("/" if path.is_dir() else ""))})
    distributed = make_config(remote_corpus, tmp_path / "ray", engine=EngineConfig(kind="ray", workers=2),
                              storage=s3.storage())
    prepare_run(distributed)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # after the credentials are set
    try:
        outcome = api.run_one("score", distributed)
    finally:
        ray.shutdown()
    assert outcome.counts["records"] == 80 and outcome.counts["shards_skipped"] == 0
    # The same scores and the same input digests; only the stage fingerprints differ (other paths).
    remote, on_disk = tree_bytes(tmp_path / "ray" / "scores"), tree_bytes(tmp_path / "local" / "scores")
    assert remote.keys() == on_disk.keys()
    for name, data in remote.items():
        if name.endswith(".json"):  # shard markers and summary.json
            assert {**json.loads(data), "fingerprint": None} == {**json.loads(on_disk[name]), "fingerprint": None}
        else:
            assert data == on_disk[name], name


# --- workers die with their driver (issue 10 item 6) ----------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and (_stat(int(entry)) or ["", "0"])[1] == str(pid)]


def _running(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited; only its parent's bookkeeping is left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _workers(driver: int) -> list[int]:
    """The driver's worker processes (spawned children, or the fork server's children and the server),
    once there are two workers."""
    children = _children(driver)
    servers = [pid for pid in children if b"forkserver" in _cmdline(pid)]
    workers = [pid for pid in children if b"spawn_main" in _cmdline(pid)] + [w for s in servers for w in _children(s)]
    return workers + servers if len(workers) >= 2 else []  # the server too: it must not outlive the driver


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                                                      os.environ.get("PYTHONPATH")]))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(180)
@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_workers_of_a_sigkilled_driver_die_within_seconds(tmp_path, start_method):
    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=2, batch_size=4,
                                                                       start_method=start_method))
    run = prepare_run(config)
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json())
    driver = (
        "from pathlib import Path\n"
        "from mira.core.config import RunConfig\n"
        "from mira.run.rundir import RunDir\n"
        "from mira.stages.score import score_corpus\n"
        "from tests.engines.doubles import DoubleModels\n"
        "if __name__ == '__main__':\n"
        f"    config = RunConfig.model_validate_json(Path({str(config_file)!r}).read_text())\n"
        "    score_corpus(config, RunDir(Path(config.run_dir)), models=DoubleModels(delay=0.5))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver], env=_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 or not list(run.root.glob("scores/*/*.done.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "scoring did not start"
            workers = _workers(proc.pid)
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: no cleanup code of ours runs
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _running(pid)], "workers outlived their driver"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # survivors of a failed run of this test


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_watchdog_alone_ends_a_worker_whose_parent_is_gone():
    # No prctl here: the fallback for other systems and for forkserver children.
    child = ("import os, time\n"
             "from mira.engines.local import watch_parent\n"
             "watch_parent(os.getppid(), os.getppid(), 0.1)\n"
             "print(os.getpid(), flush=True)\n"
             "time.sleep(60)\n")
    parent = ("import subprocess, sys\n"
              f"sys.exit(subprocess.Popen([sys.executable, '-c', {child!r}]).wait())\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), "the watchdog did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _running(int(line)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(int(line))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_engine_address_is_read_under_its_older_name_too():
    from mira.run.config_file import load_config

    assert load_config(overrides=["engine.address=ray://head:10001"]).engine.address == "ray://head:10001"
    assert load_config(overrides=["engine.ray_address=auto"]).engine.address == "auto"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(180)
@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_workers_of_a_sigkilled_driver_whose_parent_has_not_reaped_it_die_within_seconds(tmp_path, start_method):
    """A Python orchestrator runs `mira score` with subprocess.run(capture_output=True): killed with
    SIGKILL, the driver stays a zombie until the orchestrator reaps it, which it does only once the
    output pipe closes; the fork server and workers hold that pipe, and they watched for the driver
    with kill(pid, 0), which a zombie passes. So nobody ever exited (issue 27 item 10)."""
    corpus = build_corpus(tmp_path / "corpus")
    config = make_config(corpus, tmp_path / "run", engine=EngineConfig(workers=2, batch_size=4,
                                                                       start_method=start_method))
    run = prepare_run(config)
    config_file, pid_file = tmp_path / "config.json", tmp_path / "driver.pid"
    config_file.write_text(config.model_dump_json())
    driver = (
        "import os\n"
        "from pathlib import Path\n"
        "from mira.core.config import RunConfig\n"
        "from mira.run.rundir import RunDir\n"
        "from mira.scoring.corpus_scores import score_corpus\n"
        "from tests.engines.doubles import DoubleModels\n"
        "if __name__ == '__main__':\n"
        f"    Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        f"    config = RunConfig.model_validate_json(Path({str(config_file)!r}).read_text())\n"
        "    print('scoring', flush=True)\n"
        "    score_corpus(config, RunDir(Path(config.run_dir)), models=DoubleModels(delay=0.5))\n"
    )
    orchestrator = ("import subprocess, sys\n"
                    f"done = subprocess.run([sys.executable, '-c', {driver!r}], capture_output=True)\n"
                    "print('reaped', done.returncode, flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", orchestrator], env=_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() or len(workers) < 2 or not list(run.root.glob("scores/*/*.done.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "scoring did not start"
            workers = _workers(int(pid_file.read_text())) if pid_file.exists() and pid_file.read_text() else []
            time.sleep(0.05)
        driver_pid = int(pid_file.read_text())
        os.kill(driver_pid, signal.SIGKILL)  # the orchestrator does not reap it: it waits for the pipe
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _running(pid)], "workers outlived their (zombie) driver"
        out, _ = proc.communicate(timeout=10)  # the pipe closed, so the orchestrator reaped and went on
        assert out.strip() == f"reaped {-signal.SIGKILL}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # survivors of a failed run of this test
