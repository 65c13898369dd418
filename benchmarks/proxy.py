"""Proxy training: throughput on this machine, and the junk-dilution instrument check (issue 12).

    .venv/bin/python benchmarks/proxy.py [--seeds 3] [--dilution 0.5] [--set train_bytes=500000 ...]

Prints
- training bytes/s of the proxy model at the given size (the model reads bytes, so bytes/s is its
  tokens/s), on the CPU and, when torch sees one, on CUDA;
- the instrument check: a clean selection (real Python: the stdlib's non-test sources) against the
  same selection with `--dilution` of its documents replaced by junk (the document's own words,
  shuffled: same bytes and vocabulary, no code structure), each trained on the same byte budget for
  `--seeds` seeds, evaluated on held-out stdlib files that are in neither selection; mean ± std of
  bits per byte per selection and the verdict (clean must beat diluted beyond seed noise).
The CPU may be shared with other work: compare figures only within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import yaml

from mira.core.config import ProxyConfig
from mira.evaluation.proxy import train_proxy, verdict

SKIP_DIRS = {"test", "tests", "idle_test", "site-packages"}
HELDOUT_SHARE = 0.1


def stdlib_files() -> tuple[list[str], list[str]]:
    """(train texts, held-out texts): non-test stdlib sources split by a hash of their path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, heldout = [], []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if SKIP_DIRS & set(relative.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        bucket = int(hashlib.sha1(str(relative).encode()).hexdigest()[:8], 16) / 16**8
        (heldout if bucket < HELDOUT_SHARE else train).append(text)
    # The eval set is read from its start: interleave modules rather than take one package first.
    heldout.sort(key=lambda text: hashlib.sha1(text.encode()).hexdigest())
    return train, heldout


def dilute(texts: list[str], share: float, seed: int) -> list[str]:
    """Replace `share` of the documents by their own words in a shuffled order."""
    rng = np.random.default_rng(seed)
    out = list(texts)
    for index in rng.choice(len(texts), size=round(share * len(texts)), replace=False):
        words = texts[index].split()
        rng.shuffle(words)
        out[index] = " ".join(words)
    return out


def parse_sets(items: list[str]) -> dict:
    updates = {}
    for item in items:
        key, _, raw = item.partition("=")
        updates[key.strip()] = yaml.safe_load(raw)
    return updates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dilution", type=float, default=0.5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a ProxyConfig field, e.g. train_bytes=500000 (repeatable)")
    parser.add_argument("--skip-check", action="store_true", help="throughput only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = ProxyConfig(**{"device": "cpu", **parse_sets(args.set)})
    train, heldout = stdlib_files()
    diluted = dilute(train, args.dilution, seed=0)
    eval_sets = {"heldout_code": heldout}
    print(f"data: {len(train)} train files ({sum(map(len, train)) / 1e6:.1f} MB), "
          f"{len(heldout)} held-out files ({sum(map(len, heldout)) / 1e6:.1f} MB); "
          f"diluted: {args.dilution:.0%} of documents word-shuffled")
    print("config: " + " ".join(f"{k}={v}" for k, v in config.model_dump().items() if k != "enabled"))

    import torch

    if torch.cuda.is_available():
        gpu = config.model_copy(update={"device": "cuda"})
        result = train_proxy(train, eval_sets, gpu, seed=0)
        print(f"cuda ({torch.cuda.get_device_name()}): {result.train_bytes_per_s:,.0f} training bytes/s, "
              f"{result.seconds:.1f} s per run, heldout {result.eval['heldout_code'].bpb:.4f} bpb")

    results: dict[str, list] = {"clean": [], "diluted": []}
    for seed in range(args.seeds if not args.skip_check else 1):
        for name, texts in (("clean", train), ("diluted", diluted)):
            result = train_proxy(texts, eval_sets, config, seed=seed)
            results[name].append(result)
            print(f"  {name:8s} seed {seed}: {result.eval['heldout_code'].bpb:.4f} bpb held-out, "
                  f"train loss {result.final_train_loss:.4f}, {result.train_bytes_per_s:,.0f} bytes/s, "
                  f"{result.seconds:.1f} s, {result.params:,} params, {result.epochs:.2f} epochs", flush=True)
            if args.skip_check:
                break
    speeds = [r.train_bytes_per_s for rs in results.values() for r in rs]
    print(f"cpu ({config.threads or 'all'} threads of {_cores()}): {statistics.median(speeds):,.0f} training bytes/s "
          f"(median of {len(speeds)} runs, min {min(speeds):,.0f}, max {max(speeds):,.0f}); "
          f"{statistics.median(r.seconds for rs in results.values() for r in rs):.1f} s per run")
    if args.skip_check:
        return 0
    bpb = {name: [r.eval["heldout_code"].bpb for r in rs] for name, rs in results.items()}
    for name, values in bpb.items():
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"{name:8s}: {statistics.mean(values):.4f} ± {spread:.4f} bpb on held-out code ({len(values)} seeds)")
    check = verdict(bpb["clean"], bpb["diluted"], labels=("clean", "diluted"))
    print("verdict: " + check["text"])
    passed = check["beyond_noise"] and check["diff"] < 0
    print("instrument check: " + ("PASS (clean beats diluted beyond seed noise)" if passed else "FAIL"))
    return 0 if passed else 1


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - started:.0f} s")
    sys.exit(code)
