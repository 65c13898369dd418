"""Test doubles for scoring and selection: a small real-text corpus and a stand-in student.

The stand-in follows the contract of docs/architecture.md (``Student.anchors``,
``Student.predict(formats, texts) -> (n, n_anchors)``, ``mask.json``, NaN aggregate where every
anchor of a source is masked) without training anything, so score/select tests stay fast and
do not depend on the distill stage. It still reads the text: scores are functions of simple
features of the rendering, so different records get different scores.

Everything here is importable by name, so spawned workers and Ray actors can unpickle it.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
import sysconfig
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import IngestConfig, RunConfig, SourceConfig, TokenizerConfig
from mira.io.files import atomic_write_json, read_json
from mira.run.rundir import RunDir
from mira.scoring.corpus_scores import StageModels

ANCHORS = {"g0": ["a00", "a01", "a02"], "g1": ["a00", "a01"]}
GROUPS = {"g0": ["pycode"], "g1": ["docs", "qa"]}
STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_FILES = ["abc.py", "base64.py", "bisect.py", "calendar.py", "cmd.py", "codeop.py", "colorsys.py",
                "contextvars.py", "copy.py", "copyreg.py", "csv.py", "dataclasses.py", "difflib.py", "enum.py",
                "filecmp.py", "fnmatch.py", "fractions.py", "functools.py", "getopt.py", "glob.py", "graphlib.py",
                "heapq.py", "hmac.py", "keyword.py", "linecache.py", "numbers.py", "operator.py", "queue.py"]


class HashStudent:
    """Per-anchor scores from text features (length, comment density, word variety)."""

    def __init__(self, anchors: list[str], delay: float = 0.0) -> None:
        self.anchors = anchors
        self.delay = delay

    def predict(self, formats: list[str | None] | None, texts: list[str]) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), len(self.anchors)))
        for i, text in enumerate(texts):
            lines = text.splitlines() or [""]
            words = text.split()
            features = [math.log1p(len(text)) / 10, sum(ln.strip().startswith(("#", '"')) for ln in lines) / len(lines),
                        len(set(words)) / max(1, len(words)), (zlib.crc32(text.encode()) % 1000) / 1000]
            for j in range(len(self.anchors)):
                weights = [(j + 1) * 0.7, 1.5 - j, 2.0, 1.0 + 0.5 * j]
                out[i, j] = 10 / (1 + math.exp(-(sum(w * f for w, f in zip(weights, features)) - 2.5)))
        return out


class DoubleModels(StageModels):
    """Groups from the real groups.json and the stand-in student (select aggregates with the real mask)."""

    def __init__(self, delay: float = 0.0, device: str = "auto") -> None:
        super().__init__(device=device)
        self.delay = delay

    def load_student(self, run: RunDir, group: str) -> HashStudent:
        spec = read_json(run.path("students", group, "student.json"))
        return HashStudent(spec["anchors"], self.delay)


FORMAT_SCORES = {"text": 1.0, "code": 2.0, "qa": 3.0, "chat": 4.0, "agent": 5.0}


class FormatStudent(HashStudent):
    """Scores every anchor with its record's format (FORMAT_SCORES; NaN when none was passed)."""

    def predict(self, formats: list[str | None] | None, texts: list[str]) -> np.ndarray:
        assert formats is None or len(formats) == len(texts)
        codes = [FORMAT_SCORES.get(f, math.nan) if f is not None else math.nan for f in formats or [None] * len(texts)]
        return np.repeat(np.array(codes, dtype=np.float64)[:, None], len(self.anchors), axis=1)


class FormatModels(DoubleModels):
    def load_student(self, run: RunDir, group: str) -> HashStudent:
        return FormatStudent(read_json(run.path("students", group, "student.json"))["anchors"])


def _docstrings() -> list[tuple[str, str, str]]:
    """(module, name, docstring) of stdlib modules and their functions, in a fixed order."""
    out = []
    for name in STDLIB_FILES:
        tree = ast.parse((STDLIB / name).read_text(encoding="utf-8"))
        module_doc = ast.get_docstring(tree)
        if module_doc:
            out.append((name[:-3], "", module_doc))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) and not node.name.startswith("_"):
                out.append((name[:-3], node.name, ast.get_docstring(node)))
    return out


def build_corpus(root: Path) -> list[dict[str, Any]]:
    """Three real-text sources under `root`; returns their source configs (as dicts)."""
    code_dir = root / "pycode"
    code_dir.mkdir(parents=True, exist_ok=True)
    for name in STDLIB_FILES[:24]:
        shutil.copyfile(STDLIB / name, code_dir / name)
    docs = _docstrings()
    module_docs = [d for d in docs if not d[1]]
    function_docs = [d for d in docs if d[1]]
    with open(root / "docs.jsonl", "w", encoding="utf-8") as handle:
        for module, _, doc in module_docs:
            handle.write(json.dumps({"id": f"doc-{module}", "text": doc}) + "\n")
        handle.write('{"id": "broken", "text": "unterminated\n')  # malformed JSON: quarantined
        handle.write(json.dumps({"id": "empty", "text": ""}) + "\n")  # empty record: quarantined
        for module, func, doc in function_docs[:10]:
            handle.write(json.dumps({"id": f"doc-{module}.{func}", "title": func, "text": doc}) + "\n")
    with open(root / "qa.jsonl", "w", encoding="utf-8") as handle:
        for module, func, doc in function_docs[10:30]:
            handle.write(json.dumps({"id": f"qa-{module}.{func}", "question": f"What does {module}.{func} do?",
                                     "answer": doc}) + "\n")
    return [{"name": "pycode", "path": str(code_dir), "include": "*.py"},
            {"name": "docs", "path": str(root / "docs.jsonl")},
            {"name": "qa", "path": str(root / "qa.jsonl")}]


def make_config(corpus: list[dict[str, Any]], run_dir: Path, **sections: Any) -> RunConfig:
    sections.setdefault("ingest", IngestConfig(shard_records=8))
    sections.setdefault("tokenizer", TokenizerConfig(name="cl100k_base"))
    return RunConfig(name="t", run_dir=str(run_dir), sources=[SourceConfig(**s) for s in corpus], **sections)


def prepare_run(config: RunConfig, masked_sources: tuple[str, ...] = ("qa",)) -> RunDir:
    """Ingest for real, then write groups.json, students and masks as the upstream stages would."""
    from mira import api

    api.run_one("ingest", config)
    run = RunDir(Path(config.run_dir))
    atomic_write_json(run.groups_path, {
        "k": len(GROUPS), "chosen_by": "config", "k_scores": {},
        "groups": [{"id": g, "label": g, "sources": s, "within_similarity": 1.0, "pinned": False}
                   for g, s in GROUPS.items()],
        "source_to_group": {s: g for g, sources in GROUPS.items() for s in sources}})
    for group, anchors in ANCHORS.items():
        atomic_write_json(run.path("students", group, "student.json"), {"kind": "test-double", "anchors": anchors})
        cells: dict[str, Any] = {"*": {a: {"masked": False, "reason": None, "weight": 1.0} for a in anchors}}
        for source in GROUPS[group]:
            masked = source in masked_sources
            cells[source] = {a: {"masked": masked, "reason": "test: unreliable" if masked else None, "weight": 1.0}
                             for a in anchors}
        atomic_write_json(run.path("students", group, "mask.json"), {"anchors": anchors, "cells": cells})
    # Fixed fingerprints, so two run directories over the same corpus agree byte for byte.
    run.mark_done("group", "group-double")
    run.mark_done("distill", "distill-double")
    return run


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes): for byte-identical comparisons."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def score_with_doubles(config: RunConfig, *stages: str, prepare: bool = True) -> None:
    """Run `stages` (default: score) with the stand-in students; with `prepare`, build the upstream
    artifacts first (prepare_run). StageModels is restored even when a stage fails."""
    from mira import api
    from mira.scoring import corpus_scores

    original = corpus_scores.StageModels
    corpus_scores.StageModels = DoubleModels
    try:
        if prepare:
            prepare_run(config)
        for stage in stages or ("score",):
            api.run_one(stage, config, force=not prepare)
    finally:
        corpus_scores.StageModels = original


def build_scored_run(root: Path) -> tuple[list[dict[str, Any]], Path]:
    """The test corpus under `root/corpus`, ingested and scored with the stand-in student (qa masked)
    in `root/run`; tests copy the run directory. Returns (source configs, run path)."""
    from mira.core.config import EngineConfig

    corpus = build_corpus(root / "corpus")
    score_with_doubles(make_config(corpus, root / "run", engine=EngineConfig(workers=1)))
    return corpus, root / "run"
