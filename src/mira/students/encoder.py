"""The encoder student: a small transformer encoder fine-tuned with a multi-output regression head.

Meant for a GPU (it uses one when torch sees it); on a CPU it trains on small labelled sets only.
The bundled all-MiniLM-L6-v2 is the default backbone. Mean pooling over tokens, then one linear
layer to the anchors; targets are scaled to 0..1 for training. Saved as the fine-tuned encoder
(``encoder/``, Hugging Face format) and ``head.npz``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mira.core.config import StudentConfig
from mira.io.files import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


def _device(preference: str = "auto") -> str:
    import torch

    from mira.core.config import ConfigError

    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("student.encoder_device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


class EncoderStudent:
    kind = "encoder"

    def __init__(self, anchors: list[str], encoder: Any, tokenizer: Any, head: Any, max_tokens: int,
                 batch_size: int = 64) -> None:
        self.anchors = list(anchors)
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = head
        self.max_tokens = max_tokens
        self.batch_size = batch_size

    def _forward(self, texts: Sequence[str]) -> Any:
        device = next(self.encoder.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt").to(device)
        hidden = self.encoder(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)

    def predict(self, formats: Sequence[str | None] | None, texts: Sequence[str]) -> np.ndarray:
        # The encoder reads the rendering only; formats are part of the Student protocol.
        import torch

        if len(texts) == 0:
            return np.zeros((0, len(self.anchors)), dtype=np.float32)
        self.encoder.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                out.append(self._forward(texts[start:start + self.batch_size]).float().cpu().numpy())
        return np.clip(np.vstack(out) * 10.0, 0.0, 10.0).astype(np.float32)

    @classmethod
    def fit(cls, anchors: list[str], texts: Sequence[str], targets: np.ndarray, train_idx: np.ndarray,
            config: StudentConfig) -> tuple[EncoderStudent, dict[str, Any]]:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from mira.text.embed import _offline, resolve_model

        _offline()
        torch.manual_seed(config.seed)
        device = _device(config.encoder_device)
        path = resolve_model(config.encoder_model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path).to(device)
        Y = np.asarray(targets, dtype=np.float32)[train_idx] / 10.0
        Y = np.where(np.isfinite(Y), Y, np.nanmean(Y, axis=0, keepdims=True))
        Y = np.nan_to_num(Y, nan=0.5)
        head = torch.nn.Linear(encoder.config.hidden_size, len(anchors)).to(device)
        with torch.no_grad():
            head.weight.mul_(0.01)
            head.bias.copy_(torch.tensor(Y.mean(axis=0), device=device))  # start at the label means
        student = cls(anchors, encoder, tokenizer, head, config.encoder_max_tokens)
        optimizer = torch.optim.AdamW([
            {"params": encoder.parameters(), "lr": config.encoder_learning_rate},
            {"params": head.parameters(), "lr": config.encoder_learning_rate * 20},
        ], weight_decay=0.01)
        train_texts = [texts[i] for i in train_idx]
        rng = np.random.default_rng(config.seed)
        losses = []
        encoder.train()
        for epoch in range(config.encoder_epochs):
            order = rng.permutation(len(train_texts))
            total = 0.0
            for start in range(0, len(order), config.encoder_batch_size):
                idx = order[start:start + config.encoder_batch_size]
                pred = student._forward([train_texts[i] for i in idx])
                loss = torch.nn.functional.mse_loss(pred, torch.tensor(Y[idx], device=device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            losses.append(round(total / max(len(order), 1), 5))
            log.info("encoder student: epoch %d loss %.4f", epoch + 1, losses[-1])
        encoder.eval()
        return student, {"regressor": "linear-head", "candidates": {}, "train_loss": losses, "device": device}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(folder / "encoder"))
        self.tokenizer.save_pretrained(str(folder / "encoder"))
        with atomic_path(folder / "head.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, weight=self.head.weight.detach().cpu().numpy(),
                     bias=self.head.bias.detach().cpu().numpy())
        atomic_write_json(folder / "student.json", {"kind": self.kind, "anchors": self.anchors,
                                                    "regressor": "linear-head", "max_tokens": self.max_tokens})

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], device: str = "auto") -> EncoderStudent:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from mira.text.embed import _offline

        _offline()
        device = _device(device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "encoder"))
        encoder = AutoModel.from_pretrained(str(folder / "encoder")).to(device).eval()
        with np.load(folder / "head.npz", allow_pickle=False) as data:
            weight, bias = data["weight"], data["bias"]
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(weight))
            head.bias.copy_(torch.from_numpy(bias))
        return cls(meta["anchors"], encoder, tokenizer, head.to(device).eval(), int(meta["max_tokens"]))
