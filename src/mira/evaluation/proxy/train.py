"""Train one proxy model on a selection and evaluate it on held-out sets."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from mira.artifacts.proxy import EvalScore, ProxyResult, bits_per_byte
from mira.core.config import ConfigError, ProxyConfig
from mira.evaluation.proxy.data import draw_training_bytes, eval_bytes, tail, windows

if TYPE_CHECKING:
    import torch

    from mira.core.progress import ProgressFactory

log = logging.getLogger(__name__)

# Optimizer settings that are not worth a config key: the usual small-GPT choices.
WARMUP_SHARE = 0.05  # of the steps, linear warmup to the peak learning rate
FINAL_LR_SHARE = 0.1  # cosine decay ends at this share of the peak
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.95)
GRAD_CLIP = 1.0
FINAL_LOSS_SHARE = 0.05  # final_train_loss averages this last share of the steps
EVAL_BATCH_FACTOR = 4  # eval needs no gradients, so larger batches fit
# Training draws sample pieces of this many windows: 4 KB at the default context, small enough
# that a budget holds hundreds of them (a seed's draw then mirrors the selection's mix), large
# enough that most windows keep their file's context.
PIECE_WINDOWS = 32


def train_proxy(train_texts: Iterable[str], eval_sets: Mapping[str, Sequence[str]], config: ProxyConfig,
                seed: int, progress: ProgressFactory | None = None) -> ProxyResult:
    """Train a byte-level causal LM from scratch on ``config.train_bytes`` bytes of ``train_texts``
    and evaluate it on the first ``config.eval_bytes`` bytes of each eval set.

    The training bytes are a seeded random draw of document pieces (32 windows each; cycled,
    reshuffled, when the selection is smaller than the budget), cut into non-overlapping ``config.context`` windows that
    are visited in a seeded order; the budget is rounded down to whole windows. Given the seed the
    result is deterministic on the CPU for a fixed thread count (CUDA kernels may differ in the last
    bits). The caller's global torch RNG state and thread count are left as they were.
    ``progress(description, total)`` (see :mod:`mira.pipeline.runner`) gets one task advanced per step.
    """
    import torch

    from mira.evaluation.proxy.model import ByteLM

    if seed < 0:
        raise ValueError(f"proxy seed must be >= 0, not {seed}")
    device = _device(config.device)
    started = time.perf_counter()
    context = config.context
    n_windows = config.train_bytes // context
    if n_windows == 0:
        raise ConfigError(f"proxy.train_bytes ({config.train_bytes}) is smaller than proxy.context ({context})")
    draw = draw_training_bytes(train_texts, n_windows * context + 1, seed, piece_bytes=PIECE_WINDOWS * context)
    train = windows(draw.data, context)
    evals = {name: _eval_stream(name, texts, config.eval_bytes) for name, texts in eval_sets.items()}
    order = np.random.default_rng([seed, 1]).permutation(len(train))
    steps = math.ceil(len(train) / config.batch_size)
    eval_batch = config.batch_size * EVAL_BATCH_FACTOR
    eval_steps = sum(len(_eval_batches(data, context, eval_batch)) for data in evals.values())
    threads = _threads(config)
    task = (progress or _null_progress)(f"proxy training, seed {seed}", steps + eval_steps)
    try:
        with _torch_threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # Built on the CPU, then moved: the same seed gives the same initial weights anywhere.
            model = ByteLM(context, config.layers, config.d_model, config.heads).to(device)
            params = sum(p.numel() for p in model.parameters())
            log.info("proxy seed %d: %d parameters, %d steps of %d x %d bytes on %s (selection %.2f epochs)",
                     seed, params, steps, config.batch_size, context, device, draw.epochs)
            train_started = time.perf_counter()
            losses = _train(model, train, order, config, steps, device, task)
            train_seconds = time.perf_counter() - train_started
            scores = {name: _evaluate(model, data, context, eval_batch, device, task)
                      for name, data in evals.items()}
    finally:
        task.close()
    tail_steps = max(1, round(FINAL_LOSS_SHARE * len(losses)))
    trained = len(train) * context
    result = ProxyResult(
        seed=seed, train_bytes=trained, epochs=trained / draw.selection_bytes,
        selection_bytes=draw.selection_bytes, selection_docs=draw.selection_docs,
        seconds=time.perf_counter() - started, train_bytes_per_s=trained / max(train_seconds, 1e-9),
        device=str(device), threads=threads if device.type == "cpu" else None, params=params,
        final_train_loss=float(np.mean(losses[-tail_steps:])), eval=scores,
        config=config.model_dump(mode="json"))
    log.info("proxy seed %d: %.0f bytes/s, final train loss %.4f, %s", seed, result.train_bytes_per_s,
             result.final_train_loss, ", ".join(f"{k} {v.bpb:.4f} bpb" for k, v in scores.items()))
    return result


def _train(model: Any, train: np.ndarray, order: np.ndarray, config: ProxyConfig, steps: int,
           device: torch.device, task: Any) -> list[float]:
    import torch
    from torch.nn import functional as F

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate, betas=BETAS)
    warmup = max(1, round(WARMUP_SHARE * steps))
    losses: list[float] = []
    model.train()
    for step in range(steps):
        optimizer.param_groups[0]["lr"] = optimizer.param_groups[1]["lr"] = _lr(step, steps, warmup, config)
        batch = torch.from_numpy(train[order[step * config.batch_size:(step + 1) * config.batch_size]])
        batch = batch.to(device=device, dtype=torch.long)
        with _autocast(device):
            logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise RuntimeError(f"proxy training diverged at step {step} (loss {value}); "
                               "lower proxy.learning_rate")
        losses.append(value)
        task.advance(1)
    return losses


def _lr(step: int, steps: int, warmup: int, config: ProxyConfig) -> float:
    peak = config.learning_rate
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (FINAL_LR_SHARE + (1 - FINAL_LR_SHARE) * 0.5 * (1 + math.cos(math.pi * progress)))


def _evaluate(model: Any, data: bytes, context: int, batch_size: int, device: torch.device,
              task: Any) -> EvalScore:
    """Mean next-byte loss over every byte of ``data`` after the first, in fixed windows."""
    import torch
    from torch.nn import functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for chunk in _eval_batches(data, context, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(chunk)).to(device=device, dtype=torch.long)
            with _autocast(device):
                logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                   reduction="sum")
            total += float(loss)
            count += batch.shape[0] * (batch.shape[1] - 1)
            task.advance(1)
    model.train()
    mean = total / count
    return EvalScore(loss=mean, bpb=bits_per_byte(mean), bytes=count)


def _eval_batches(data: bytes, context: int, batch_size: int) -> list[np.ndarray]:
    """Full windows in batches, then the shorter tail window (if any) as a batch of its own."""
    full, rest = windows(data, context), tail(data, context)
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)]
    if len(rest):
        batches.append(rest[None, :])
    return batches


def _eval_stream(name: str, texts: Sequence[str], n_bytes: int) -> bytes:
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"eval set {name!r} must be a sequence of texts, not one {type(texts).__name__}")
    data = eval_bytes(texts, n_bytes)
    if len(data) < 2:
        raise ConfigError(f"proxy eval set {name!r} has no text to evaluate on")
    if len(data) < n_bytes + 1:
        log.warning("proxy eval set %r has only %d bytes (proxy.eval_bytes is %d)", name, len(data) - 1, n_bytes)
    return data


def _device(name: str) -> torch.device:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("proxy.device is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _threads(config: ProxyConfig) -> int:
    if config.threads:
        return config.threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _autocast(device: torch.device) -> torch.autocast:
    import torch

    # bfloat16 on CUDA (tensor cores, several times faster); the CPU stays in float32, where bf16
    # matmuls are slower on most cores and results would drift from the tested ones.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class _NullTask:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _null_progress(description: str, total: int | None = None) -> _NullTask:
    return _NullTask()
