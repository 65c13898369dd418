"""The default student: static embedding + structural features -> multi-output regressor.

Below ``student.prior_below`` training rows the regressor is the few-label one (one direction
shared by the anchors over few features, :mod:`mira.students.prior`). From there the regressors of
``student.regressors`` compete: the same few-label regressor, a ridge regression (multi-output, one penalty per
anchor chosen by efficient leave-one-out) and LightGBM (one small booster per anchor). The one
with the higher mean out-of-fold Spearman in a K-fold cross-validation *inside the training rows*
wins and is refit on all of them; the validation rows are never seen, so they stay an honest test
of the chosen model (mira.scoring.reliability). The cross-validation figures of every candidate are kept
in ``metrics.json`` (``candidates``).

Saved without pickles: ``student.json`` (kind, anchors, feature settings), ``ridge.npz`` (scaler and
coefficients) or ``lgbm/<anchor index>.txt`` (LightGBM's own text format).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import EmbedConfig, StudentConfig
from mira.io.files import atomic_path, atomic_write_json, atomic_write_text
from mira.students.features import FEATURE_VERSION, Featurizer
from mira.students.prior import PriorRidge

log = logging.getLogger(__name__)
RIDGE_ALPHAS = np.logspace(-2, 4, 13)
# Folds of the cross-validation that chooses the regressor inside the training rows.
CV_FOLDS = 5
_FEATURIZERS: dict[tuple[str, ...], Featurizer] = {}


def featurizer(embed: EmbedConfig, max_chars: int) -> Featurizer:
    """One featurizer per process and setting: its chunk cache warms up across batches."""
    key = (embed.model, embed.static_model, str(embed.static_pca_dims), str(max_chars))
    if key not in _FEATURIZERS:
        _FEATURIZERS[key] = Featurizer(embed, max_chars)
    return _FEATURIZERS[key]


def mean_spearman(pred: np.ndarray, target: np.ndarray) -> float:
    from mira.students.metrics import spearman

    values = [spearman(pred[:, j], target[:, j]) for j in range(target.shape[1])]
    return float(np.mean([v if v is not None else 0.0 for v in values])) if values else 0.0


def cv_folds(n: int, seed: int, k: int = CV_FOLDS) -> list[np.ndarray]:
    """Seeded K-fold partition of range(n) (positions); [] when n is too small to hold out 2 rows
    per fold (Spearman needs a few rows, and a one-row fold says nothing about ranking)."""
    k = min(k, n // 2)
    if k < 2:
        return []
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


# --- regressors ----------------------------------------------------------------------------------

class RidgeRegressor:
    name = "ridge"

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, seed: int, embedding_dims: int = 0,
            background: np.ndarray | None = None) -> RidgeRegressor:
        from sklearn.linear_model import RidgeCV

        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-8] = 1.0
        if 0 < embedding_dims < X.shape[1]:
            # Standardised, 256 embedding dimensions would outvote ~25 structural features under one
            # penalty and drown a signal the structural features carry. Give the embedding block, as a
            # whole, the weight of the structural block.
            scale[:embedding_dims] /= np.sqrt((X.shape[1] - embedding_dims) / embedding_dims)
        model = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True).fit((X - mean) / scale, Y)
        coef = np.atleast_2d(model.coef_).astype(np.float32)
        return cls(mean.astype(np.float32), scale.astype(np.float32), coef,
                   np.atleast_1d(model.intercept_).astype(np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        # Not `Z @ coef.T`: BLAS picks gemm kernels and blocking by the number of rows, so a record's
        # score would depend on the batch it came in. vecdot computes each (record, anchor) score as
        # one dot product of two vectors, whatever the other rows (about 1 us a record).
        Z = ((X - self.mean) / self.scale).astype(np.float64)
        scores = np.vecdot(Z[:, None, :], self.coef.astype(np.float64)[None, :, :])
        return (scores + self.intercept).astype(np.float32)

    def save(self, folder: Path) -> None:
        with atomic_path(folder / "ridge.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, folder: Path) -> RidgeRegressor:
        with np.load(folder / "ridge.npz", allow_pickle=False) as data:
            return cls(data["mean"], data["scale"], data["coef"], data["intercept"])


class LightGBMRegressor:
    name = "lightgbm"

    def __init__(self, boosters: list[Any]) -> None:
        self.boosters = boosters

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, seed: int, embedding_dims: int = 0,
            background: np.ndarray | None = None) -> LightGBMRegressor:
        import lightgbm as lgb

        n = len(X)
        params = {
            "objective": "regression", "learning_rate": 0.05, "num_leaves": 15,
            # Labelled sets are small (tens to thousands of rows): keep leaves populated.
            "min_data_in_leaf": int(max(2, min(20, n // 10))), "min_data_in_bin": 1,
            "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
            "num_threads": 1, "seed": seed, "deterministic": True, "verbose": -1,
        }
        boosters = []
        for j in range(Y.shape[1]):
            data = lgb.Dataset(X, Y[:, j], params={"verbose": -1, "min_data_in_bin": 1})
            boosters.append(lgb.train(params, data, num_boost_round=200))
        return cls(boosters)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not self.boosters:
            return np.zeros((len(X), 0))
        return np.column_stack([b.predict(X, num_threads=1) for b in self.boosters])

    def save(self, folder: Path) -> None:
        for j, booster in enumerate(self.boosters):
            atomic_write_text(folder / "lgbm" / f"{j}.txt", booster.model_to_string())

    @classmethod
    def load(cls, folder: Path, n_anchors: int) -> LightGBMRegressor:
        import lightgbm as lgb

        return cls([lgb.Booster(model_str=(folder / "lgbm" / f"{j}.txt").read_text(encoding="utf-8"))
                    for j in range(n_anchors)])


REGRESSORS: dict[str, type[RidgeRegressor] | type[LightGBMRegressor] | type[PriorRidge]] = {
    "prior_ridge": PriorRidge, "ridge": RidgeRegressor, "lightgbm": LightGBMRegressor}


# --- the student ---------------------------------------------------------------------------------

class StaticStudent:
    """Predicts every anchor of a group from a record's rendering; scores clipped to 0..10."""

    kind = "static"

    def __init__(self, anchors: list[str], embed: EmbedConfig, max_chars: int, regressor: Any) -> None:
        self.anchors = list(anchors)
        self.embed = embed
        self.max_chars = max_chars
        self.regressor = regressor

    def features(self, texts: Sequence[str], formats: Sequence[str | None]) -> np.ndarray:
        return featurizer(self.embed, self.max_chars)(texts, formats)

    def predict(self, formats: Sequence[str | None] | None, texts: Sequence[str]) -> np.ndarray:
        if formats is not None and len(formats) != len(texts):
            raise ValueError(f"predict got {len(formats)} formats for {len(texts)} texts")
        if len(texts) == 0:
            return np.zeros((0, len(self.anchors)), dtype=np.float32)
        X = self.features(texts, formats if formats is not None else [None] * len(texts))
        return np.clip(self.regressor.predict(X), 0.0, 10.0).astype(np.float32)

    @classmethod
    def fit(cls, anchors: list[str], texts: Sequence[str], formats: Sequence[str | None], targets: np.ndarray,
            train_idx: np.ndarray, config: StudentConfig, embed: EmbedConfig,
            background: tuple[Sequence[str], Sequence[str | None]] | None = None,
            ) -> tuple[StaticStudent, dict[str, Any]]:
        """Fit the candidate regressors on `train_idx`, keep the best by cross-validation there.

        Below ``student.prior_below`` training rows the one candidate is the few-label regressor
        (:mod:`mira.students.prior`): a choice made by cross-validating inside ten rows is noise.
        `background` (renderings and formats of the group's unlabelled records) fits its embedding
        components. Returns the student and ``{"regressor", "candidates": {name: {"mean_spearman",
        "mean_mae", "folds"}}, "model_choice"}``.
        """
        features = featurizer(embed, config.embed_chars)
        X = features(texts, formats)
        Xb = features(background[0], background[1]) if background is not None and len(background[0]) else None
        Y = np.asarray(targets, dtype=np.float64)
        train_idx = np.asarray(train_idx, dtype=np.int64)
        column_means = np.nanmean(np.where(np.isfinite(Y[train_idx]), Y[train_idx], np.nan), axis=0)
        Y = np.where(np.isfinite(Y), Y, np.nan_to_num(column_means, nan=5.0))  # rare missing anchor scores
        names = list(dict.fromkeys(config.regressors))
        if len(train_idx) < config.prior_below:
            names = ["prior_ridge"]
        folds = cv_folds(len(train_idx), config.seed)
        candidates: dict[str, dict[str, float]] = {}
        if len(names) > 1 and folds:
            for name in names:
                pred = np.zeros((len(train_idx), Y.shape[1]))
                for held in folds:
                    fit_rows = np.setdiff1d(np.arange(len(train_idx)), held)
                    model = REGRESSORS[name].fit(X[train_idx[fit_rows]], Y[train_idx[fit_rows]], config.seed,
                                                 features.embedder.dim, background=Xb)
                    # Minus the fold's intercept, as distill's cross-fitting does: a fold holding
                    # high targets trains on lower ones, so a cautious (heavily regularised) model
                    # would otherwise rank against the teacher and lose the choice for that alone
                    # (on pure-noise targets and 40 rows, ridge would score a mean Spearman of -0.1 to -0.3).
                    shift = Y[train_idx].mean(axis=0) - Y[train_idx[fit_rows]].mean(axis=0)
                    pred[held] = np.clip(model.predict(X[train_idx[held]]), 0, 10) + shift
                candidates[name] = {"mean_spearman": round(mean_spearman(pred, Y[train_idx]), 4),
                                    "mean_mae": round(float(np.mean(np.abs(pred - Y[train_idx]))), 4),
                                    "folds": len(folds)}
            # Ranking is what selection uses, so Spearman decides; MAE breaks near-ties.
            best = max(candidates, key=lambda k: (round(candidates[k]["mean_spearman"], 2), -candidates[k]["mean_mae"]))
            selection = f"{len(folds)}-fold cross-validation on the {len(train_idx)} training rows"
        else:
            best = names[0]
            if len(train_idx) < config.prior_below:
                selection = f"fewer than student.prior_below={config.prior_below} training rows"
            else:
                selection = ("only candidate" if len(names) == 1
                             else f"first candidate ({len(train_idx)} training rows are too few to cross-validate)")
        model = REGRESSORS[best].fit(X[train_idx], Y[train_idx], config.seed, features.embedder.dim, background=Xb)
        log.info("static student: %s chosen by %s (%s)", best, selection, candidates)
        return (cls(anchors, embed, config.embed_chars, model),
                {"regressor": best, "candidates": candidates, "model_choice": selection})

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.regressor.save(folder)
        atomic_write_json(folder / "student.json", {
            "kind": self.kind, "anchors": self.anchors, "regressor": self.regressor.name,
            "feature_version": FEATURE_VERSION, "max_chars": self.max_chars,
            "embed": self.embed.model_dump(mode="json"),
        })

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> StaticStudent:
        if meta.get("feature_version") != FEATURE_VERSION:
            raise ValueError(f"student in {folder} was trained on {meta.get('feature_version')}, this mira computes "
                             f"{FEATURE_VERSION}; run `mira distill --force`")
        name = meta["regressor"]
        regressor: Any
        if name == "prior_ridge":
            regressor = PriorRidge.load(folder)
        elif name == "ridge":
            regressor = RidgeRegressor.load(folder)
        else:
            regressor = LightGBMRegressor.load(folder, len(meta["anchors"]))
        return cls(meta["anchors"], EmbedConfig(**meta["embed"]), int(meta["max_chars"]), regressor)
