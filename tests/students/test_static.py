import json

import numpy as np
import pytest

from mira.core.config import EmbedConfig, StudentConfig
from mira.run.rundir import RunDir
from mira.scoring.distillation import split
from mira.students import evaluate, load_student, spearman, train
from tests.students.student_data import planted_labels, stdlib_texts


@pytest.fixture(scope="module")
def planted():
    texts = stdlib_texts(160)
    signal, noise = planted_labels(texts)
    sources = ["left" if i % 2 else "right" for i in range(len(texts))]
    train_idx, val_idx = split([f"r{i}" for i in range(len(texts))], sources, 0.3, seed=0)
    return texts, np.column_stack([signal, noise]), sources, train_idx, val_idx


@pytest.mark.parametrize("regressors", [["ridge"], ["lightgbm"], ["ridge", "lightgbm"]])
@pytest.mark.slow
def test_static_student_learns_a_planted_structural_signal(planted, regressors):
    texts, Y, sources, train_idx, val_idx = planted
    student, info = train(StudentConfig(regressors=regressors), EmbedConfig(), ["signal", "noise"], texts,
                          ["code"] * len(texts), Y, train_idx)
    pred = student.predict(None, [texts[i] for i in val_idx])
    assert pred.shape == (len(val_idx), 2) and pred.min() >= 0 and pred.max() <= 10
    assert spearman(pred[:, 0], Y[val_idx, 0]) > 0.6
    assert abs(spearman(pred[:, 1], Y[val_idx, 1]) or 0.0) < 0.4
    assert info["regressor"] in regressors
    if len(regressors) > 1:  # chosen by cross-validation inside the training rows
        assert set(info["candidates"]) == set(regressors) and "training rows" in info["model_choice"]
        assert all(c["folds"] == 5 for c in info["candidates"].values())
    else:
        assert info["candidates"] == {} and info["model_choice"] == "only candidate"


def test_static_student_saves_without_pickles_and_reloads_identically(planted, tmp_path):
    texts, Y, sources, train_idx, val_idx = planted
    run = RunDir(tmp_path / "run")
    for regressor in ("ridge", "lightgbm"):
        student, _ = train(StudentConfig(regressors=[regressor]), EmbedConfig(), ["signal", "noise"], texts,
                           ["code"] * len(texts), Y, train_idx)
        folder = run.path("students", regressor)
        student.save(folder)
        assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.joblib"))
        assert json.loads((folder / "student.json").read_text())["regressor"] == regressor
        loaded = load_student(run, regressor)
        batch = [texts[i] for i in val_idx]
        assert loaded.anchors == ["signal", "noise"]
        assert np.allclose(loaded.predict(None, batch), student.predict(None, batch), atol=1e-5)


def test_static_student_predicts_from_the_formats_it_is_given(planted):
    texts, Y, sources, train_idx, val_idx = planted
    formats = ["code" if i % 3 else "text" for i in range(len(texts))]
    # The planted signal also depends on the format, so the format features get real weight.
    Y = Y + np.array([[2.0, 0.0] if f == "code" else [0.0, 0.0] for f in formats])
    student, _ = train(StudentConfig(regressors=["ridge"]), EmbedConfig(), ["signal", "noise"], texts, formats,
                       Y, train_idx)
    batch, batch_formats = [texts[i] for i in val_idx], [formats[i] for i in val_idx]
    given = student.predict(batch_formats, batch)
    swapped = student.predict(["text" if f == "code" else "code" for f in batch_formats], batch)
    code = np.array([f == "code" for f in batch_formats])
    assert (given[code, 0] > swapped[code, 0]).all() and (given[~code, 0] < swapped[~code, 0]).all()
    assert not np.array_equal(given, student.predict(None, batch))  # None: formats unknown
    with pytest.raises(ValueError, match="formats for"):
        student.predict(batch_formats[:-1], batch)


def test_evaluate_reports_cells_per_source_and_overall():
    pred = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]])
    target = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [5.0, 4.0]])
    metrics = evaluate(pred, target, ["a", "a", "b", "b"], ["x", "y"])
    assert metrics["overall"]["x"] == {"mae": 0.25, "spearman": 1.0, "n": 4}
    assert metrics["overall"]["y"]["spearman"] is None  # constant predictions: undefined, not 0
    assert metrics["cells"]["a"]["x"]["n"] == 2 and metrics["cells"]["b"]["x"]["mae"] == 0.5
    assert metrics["mean_spearman"] == 1.0


@pytest.mark.parametrize("regressor", ["ridge", "lightgbm"])
def test_a_records_prediction_does_not_depend_on_its_batch(planted, regressor):
    # Whole-corpus scoring promises bytes independent of the batch size: BLAS (ridge's matrix
    # product) picks kernels by the number of rows, and a feature once read the next document.
    texts, Y, sources, train_idx, val_idx = planted
    student, _ = train(StudentConfig(regressors=[regressor]), EmbedConfig(), ["signal", "noise"], texts,
                       ["code"] * len(texts), Y, train_idx)
    corpus = stdlib_texts(600)[-300:]  # mostly unseen windows; many start with a newline or indent
    outputs = {size: np.concatenate([student.predict(None, corpus[i:i + size])
                                     for i in range(0, len(corpus), size)])
               for size in (1, 7, 77, 512)}
    for size in (7, 77, 512):
        assert outputs[size].tobytes() == outputs[1].tobytes(), size


@pytest.mark.slow
def test_model_choice_does_not_rank_a_regressor_that_learnt_nothing_against_the_teacher(monkeypatch):
    # The model choice's cross-validation inside the training rows had the anti-correlation that
    # distill's cross-fitting removes: a regressor predicting its training mean ranked the rows
    # against the targets, so a cautious ridge lost the choice to a noisier model for that alone.
    from mira.students import static

    class MeanRegressor:
        name = "mean"

        def __init__(self, mean):
            self.mean = mean

        @classmethod
        def fit(cls, X, Y, seed, embedding_dims=0, background=None):
            return cls(Y.mean(axis=0))

        def predict(self, X):
            return np.tile(self.mean, (len(X), 1))

    monkeypatch.setitem(static.REGRESSORS, "mean", MeanRegressor)
    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(12)]
    targets = np.arange(1.0, 13.0)[:, None] * 0.6
    # "mean" is no config value; prior_below 0 lets 12 rows choose between regressors.
    config = StudentConfig().model_copy(update={"regressors": ["mean", "ridge"], "prior_below": 0})
    _, info = train(config, EmbedConfig(), ["a00"], texts, ["code"] * 12, targets, np.arange(12))
    assert abs(info["candidates"]["mean"]["mean_spearman"]) < 0.05  # constant once the fold intercept is gone
