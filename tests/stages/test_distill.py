import json

import numpy as np
import pytest

from mira.core.config import ReliabilityConfig, RunConfig
from mira.io.files import atomic_write_json
from mira.pipeline.runner import run_stage
from mira.rubrics.annotation import labels_path, write_labels
from mira.run.context import StageContext
from mira.run.rundir import RunDir
from mira.scoring.distillation import split
from mira.students import load_student
from tests.students.student_data import planted_labels, stdlib_texts

ANCHORS = ["signal", "noise"]


def _rows(texts, sources, signal, noise, failed=()):
    rows = []
    for i, text in enumerate(texts):
        ok = i not in failed
        row = {"record_id": f"{sources[i]}/{i}", "source": sources[i], "text": text, "format": "code",
               "tokens": len(text) // 4, "ok": ok, "error": None if ok else "invalid JSON"}
        for name, values in (("signal", signal), ("noise", noise)):
            row[name] = float(values[i]) if ok else None
            row[f"{name}__sampled"] = int(round(values[i])) if ok else None
            row[f"{name}__why"] = "" if ok else None
        rows.append(row)
    return rows


@pytest.fixture
def labelled_run(tmp_path):
    """A run whose group and annotate stages are 'done': groups.json and labels written directly."""
    run = RunDir(tmp_path / "run")
    sources = ["stdlib_a", "stdlib_b"]
    atomic_write_json(run.groups_path, {
        "k": 1, "chosen_by": "config", "k_scores": {},
        "groups": [{"id": "g0", "label": "code", "sources": sources, "within_similarity": 1.0, "pinned": False}],
        "source_to_group": {s: "g0" for s in sources}, "similarity": {"sources": sources, "matrix": [[1, 1], [1, 1]]},
        "embed_model": "all-MiniLM-L6-v2", "sample_per_source": 8})
    run.mark_done("group", "group-fp")
    texts = stdlib_texts(160)
    signal, noise = planted_labels(texts)
    row_sources = [sources[i % 2] for i in range(len(texts))]
    write_labels(labels_path(run, "g0"), _rows(texts, row_sources, signal, noise, failed={3, 7}), ANCHORS)
    # The teacher's second scoring of 12 records: close on the signal, random on the noise.
    again = list(range(0, 24, 2))
    jitter = np.random.default_rng(1).normal(0, 0.5, len(texts))
    write_labels(labels_path(run, "g0", consistency=True),
                 _rows([texts[i] for i in again], [row_sources[i] for i in again],
                       np.clip(signal + jitter, 0, 10)[again], np.random.default_rng(2).uniform(0, 10, 12),
                       failed=set()), ANCHORS)
    # Record ids of the consistency rows must match the first scoring's.
    import pyarrow.parquet as pq
    table = pq.read_table(labels_path(run, "g0", consistency=True))
    ids = [f"{row_sources[i]}/{i}" for i in again]
    pq.write_table(table.set_column(0, "record_id", __import__("pyarrow").array(ids)),
                   labels_path(run, "g0", consistency=True))
    run.mark_done("annotate", "annotate-fp")
    config = RunConfig(name="t", run_dir=str(run.root))
    return config, run, texts


def test_split_is_stratified_seeded_and_keeps_training_rows():
    ids = [f"r{i}" for i in range(20)]
    sources = ["a"] * 12 + ["b"] * 6 + ["c"] * 2
    train, val = split(ids, sources, 0.25, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(20))
    per_source = {s: sum(1 for i in val if sources[i] == s) for s in "abc"}
    assert per_source == {"a": 3, "b": 2, "c": 1}
    assert np.array_equal(split(ids, sources, 0.25, seed=0)[1], val)
    assert not np.array_equal(split(ids, sources, 0.25, seed=1)[1], val)
    assert split(["x"], ["a"], 0.5, 0)[1].size == 0  # a single row trains


@pytest.mark.parametrize("validation", ["crossfit", "holdout"])
@pytest.mark.slow
def test_distill_trains_measures_and_masks_the_noisy_anchor(labelled_run, validation):
    config, run, texts = labelled_run
    config.student.validation = validation
    # Held out, a source validates on ~15 rows: judge sources cell by cell from 10 rows (the anchor
    # that is noise must be masked on its own), not only by the group's aggregate.
    config.reliability.cell_rows = 10
    outcome = run_stage("distill", StageContext(config, run))
    assert outcome.counts["trained"] == 1
    metrics = json.loads(run.path("students", "g0", "metrics.json").read_text())
    assert metrics["student"] == "static" and metrics["anchors"] == ANCHORS
    candidates = {"prior_ridge", "ridge", "lightgbm"}
    assert metrics["regressor"] in candidates and set(metrics["candidates"]) == candidates
    # Model choice happened inside the training rows; the validation rows only judge reliability.
    assert metrics["model_choice"] == f"5-fold cross-validation on the {metrics['train_rows']} training rows"
    # A quarter of the usable rows (per source) confirm the final student: nothing else saw them.
    confirmation = metrics["aggregate"]["confirmation"]
    assert confirmation["rows"] == 40 and confirmation["spearman"] > 0.3
    if validation == "holdout":
        assert metrics["train_rows"] + metrics["validation_rows"] + 40 == 158  # failed rows are ignored
    else:  # every other usable row validates (out of fold), and the student kept trains on all of them
        assert metrics["train_rows"] == metrics["validation_rows"] == 158 - 40
        assert metrics["validation"].startswith("5-fold cross-fitting")
    assert set(metrics["cells"]) == {"stdlib_a", "stdlib_b"}
    assert metrics["overall"]["signal"]["spearman"] > 0.6
    assert metrics["cells"]["stdlib_a"]["signal"]["n"] == metrics["cells"]["stdlib_a"]["noise"]["n"] > 0
    ceiling = metrics["teacher_consistency"]
    assert ceiling["n"] == 12 and ceiling["anchors"]["signal"]["spearman"] > 0.9
    mask = json.loads(run.path("students", "g0", "mask.json").read_text())
    for source in ("stdlib_a", "stdlib_b"):
        assert not mask["cells"][source]["signal"]["masked"]
        assert mask["cells"][source]["noise"]["masked"] and mask["cells"][source]["noise"]["reason"]
        signal = mask["cells"][source]["signal"]
        assert signal["status"] == "reliable" and signal["lower"] > 0.2
    assert mask["needed_rows"] == 10 and mask["summary"]["undecidable"] == 0
    student = load_student(run, "g0")
    pred = student.predict(None, texts[:5])
    assert pred.shape == (5, 2) and student.anchors == ANCHORS
    import pyarrow.parquet as pq

    held_out = pq.read_table(run.path("students", "g0", "validation.parquet")).to_pylist()
    assert len(held_out) == metrics["validation_rows"]
    assert {"record_id", "source", "signal__teacher", "signal__student"} <= set(held_out[0])


def test_new_thresholds_rebuild_the_mask_without_retraining(labelled_run):
    config, run, _ = labelled_run
    config.student.regressors = ["ridge"]  # the regressor is not the subject: keep it quick
    run_stage("distill", StageContext(config, run))
    model_file = run.path("students", "g0", "student.json")
    before = model_file.stat().st_mtime_ns
    assert run_stage("distill", StageContext(config, run)).skipped
    config.reliability = ReliabilityConfig(min_spearman=-1.0, max_mae=100.0)
    outcome = run_stage("distill", StageContext(config, run))
    assert not outcome.skipped and outcome.counts["trained"] == 0
    assert model_file.stat().st_mtime_ns == before
    mask = json.loads(run.path("students", "g0", "mask.json").read_text())
    assert not mask["cells"]["stdlib_a"]["noise"]["masked"]


def test_students_of_an_older_feature_version_are_retrained(labelled_run, monkeypatch):
    # A student trained on other features is refused at load time; distill must not skip it as done.
    from mira.scoring import distillation
    from mira.stages import distill
    from mira.students import features, static

    config, run, _ = labelled_run
    config.student.regressors = ["ridge"]  # the regressor is not the subject: keep it quick
    monkeypatch.setattr(distill, "FEATURE_VERSION", "features-v0")  # the stage's fingerprint
    monkeypatch.setattr(distillation, "FEATURE_VERSION", "features-v0")  # the students' train keys
    monkeypatch.setattr(features, "FEATURE_VERSION", "features-v0")
    monkeypatch.setattr(static, "FEATURE_VERSION", "features-v0")
    run_stage("distill", StageContext(config, run))
    monkeypatch.undo()
    outcome = run_stage("distill", StageContext(config, run))
    assert not outcome.skipped and outcome.counts["trained"] == 1
    meta = json.loads(run.path("students", "g0", "student.json").read_text())
    assert meta["feature_version"] == features.FEATURE_VERSION
    load_student(run, "g0")


def test_folds_are_stratified_seeded_and_even():
    from mira.scoring.distillation import folds

    ids = [f"r{i}" for i in range(23)]
    sources = ["a"] * 12 + ["b"] * 9 + ["c"] * 2
    fold = folds(ids, sources, 5, seed=0)
    sizes = np.bincount(fold, minlength=5)
    assert sizes.sum() == 23 and sizes.max() - sizes.min() <= 1
    for source, n in (("a", 12), ("b", 9)):  # every source spread over the folds
        per = np.bincount(fold[[i for i, s in enumerate(sources) if s == source]], minlength=5)
        assert per.max() - per.min() <= 1 and per.sum() == n
    assert np.array_equal(folds(ids, sources, 5, seed=0), fold)
    assert not np.array_equal(folds(ids, sources, 5, seed=1), fold)


@pytest.mark.slow
def test_crossfit_judges_every_row_on_a_student_that_never_saw_it(labelled_run, monkeypatch):
    # The demo labels 12 records of a source: held out, 3 of them validate and every cell is
    # "undecidable" (fewer than 10 rows). Cross-fitted, all 12 do, each predicted by a student
    # trained without it.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from mira import students

    config, run, _ = labelled_run
    real_train = students.train
    judged: list[bool] = []

    class Spy:
        def __init__(self, student, trained_on):
            self.student, self.trained_on = student, trained_on

        def predict(self, formats, texts):
            # A fold model also predicts its own training rows: their mean per source is the offset
            # within-source statistics remove (crossfit_with_offsets); that judges nothing.
            if not set(texts) <= self.trained_on:
                judged.append(not self.trained_on & set(texts))
            return self.student.predict(formats, texts)

        def __getattr__(self, name):
            return getattr(self.student, name)

    def spying_train(cfg, embed, anchors, texts, formats, targets, train_idx, background=None):
        student, info = real_train(cfg, embed, anchors, texts, formats, targets, train_idx, background)
        return Spy(student, {texts[i] for i in train_idx}), info

    monkeypatch.setattr(students, "train", spying_train)
    labels = labels_path(run, "g0")
    table = pq.read_table(labels)
    pq.write_table(table.filter(pc.equal(table["source"], "stdlib_a")).slice(0, 12), labels)
    run_stage("distill", StageContext(config, run))
    assert judged and all(judged), "a row was judged by a student trained on it"
    metrics = json.loads(run.path("students", "g0", "metrics.json").read_text())
    assert metrics["validation_rows"] == 12 and metrics["train_rows"] == 12
    assert metrics["cells"]["stdlib_a"]["signal"]["n"] == 12
    mask = json.loads(run.path("students", "g0", "mask.json").read_text())
    assert mask["cells"]["stdlib_a"]["signal"]["status"] != "undecidable"


def test_crossfit_does_not_rank_a_student_that_learnt_nothing_against_the_teacher(monkeypatch):
    # A student that predicts its training rows' mean knows nothing. Out of fold, the folds with
    # high targets train on lower ones, so raw out-of-fold predictions rank the rows exactly
    # backwards (Spearman -1 on 1..12). The fold intercept is removed: no ranking is left.
    from mira.core.config import EmbedConfig, StudentConfig
    from mira.scoring.distillation import crossfit_predictions, folds
    from mira.students import spearman

    class MeanStudent:
        def __init__(self, mean):
            self.mean = mean

        def predict(self, formats, texts):
            return np.tile(self.mean, (len(texts), 1))

    import mira.students as students

    targets = np.arange(1.0, 13.0)[:, None]
    ids, sources = [f"r{i}" for i in range(12)], ["a"] * 12
    texts, formats = [f"text {i}" for i in range(12)], ["code"] * 12
    monkeypatch.setattr(students, "train",
                        lambda cfg, embed, anchors, t, f, y, idx, bg=None: (MeanStudent(y[idx].mean(axis=0)), {}))
    pred = crossfit_predictions(StudentConfig(), EmbedConfig(), ["a00"], texts, formats, targets,
                                folds(ids, sources, 5, 0))
    assert np.isfinite(pred).all()
    rho = spearman(pred[:, 0], targets[:, 0])
    assert rho is None or abs(rho) < 0.3


def test_a_missing_target_does_not_blank_its_fold(monkeypatch):
    import mira.students as students
    from mira.core.config import EmbedConfig, StudentConfig
    from mira.scoring.distillation import crossfit_predictions, folds

    class Constant:
        def predict(self, formats, texts):
            return np.full((len(texts), 2), 5.0)

    monkeypatch.setattr(students, "train", lambda *a: (Constant(), {}))
    targets = np.column_stack([np.arange(1.0, 13.0), np.arange(1.0, 13.0)])
    targets[4, 1] = np.nan
    pred = crossfit_predictions(StudentConfig(), EmbedConfig(), ["a00", "a01"], [f"t{i}" for i in range(12)],
                                ["code"] * 12, targets, folds([f"r{i}" for i in range(12)], ["a"] * 12, 5, 0))
    assert np.isfinite(pred).all()


def test_label_stats_say_how_the_targets_vary_and_where_they_come_from():
    import pyarrow as pa

    from mira.scoring.distillation import label_stats

    table = pa.table({"a00": [5.0, 5.2, 5.1, 8.0, None], "a00__sampled": [5, 5, 5, 8, None],
                      "a00__target_kind": ["expected", "expected", "expected", "sampled", None],
                      "a01": [1.0, 9.0, 1.0, 9.0, 5.0], "a01__sampled": [1, 9, 1, 9, 5]})
    stats = label_stats(table, ["a00", "a01"])
    assert stats["a00"]["n"] == 4 and stats["a00"]["modal_share"] == 0.75 and stats["a00"]["exact_share"] == 0.75
    assert stats["a00"]["std"] == pytest.approx(float(np.std([5.0, 5.2, 5.1, 8.0])), abs=1e-4)
    assert stats["a01"]["std"] == pytest.approx(float(np.std([1.0, 9.0, 1.0, 9.0, 5.0])), abs=1e-4)
    assert stats["a01"]["exact_share"] is None  # labels written before target provenance existed
