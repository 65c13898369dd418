"""Student throughput and quality, against the encoder student and the teacher, in one run.

    .venv/bin/python benchmarks/student.py [--docs 8192] [--workers 2] [--encoder-epochs 2]
                                           [--measure-teacher N]

Prints, on 2 KB records built from real Python files (stdlib + site-packages):
- the default (static) student's docs/s end to end (featurize + predict), one process and
  `--workers` processes, on texts it has never seen (its chunk cache warmed on other files);
- the MiniLM encoder student's docs/s (predict), on the CPU and, when torch sees one, on CUDA
  (`--encoder-only` skips the static student, e.g. on a GPU machine without model2vec);
- the teacher's seconds per annotate request: estimated from the measured speeds of the bundled
  1.5B model (DESIGN.md: 34 tokens/s generation, 160 tokens/s prompt) for the real request the
  annotate stage builds, or measured with `--measure-teacher N` (starts the local model server);
- the ratios (goals: >= 50x the encoder student, >= 10,000x the teacher);
- held-out Spearman of both students on a synthetic-from-real labelled set: real file windows
  with planted labels (comment share; test-suite code or not; a noisy mix of both).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import site
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

RECORD_CHARS = 2_048
BATCH = 512


def python_files() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"])] + [Path(p) for p in site.getsitepackages()]
    files = []
    for root in roots:
        files += sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return files


def windows(files: list[Path], n: int, offset: int = 0) -> tuple[list[str], list[str]]:
    """`n` 2 KB windows (and their file paths) from `files`, starting at file `offset`."""
    texts, paths = [], []
    for path in files[offset:]:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for start in range(0, len(text) - RECORD_CHARS, RECORD_CHARS * 4):
            texts.append(text[start:start + RECORD_CHARS])
            paths.append(str(path))
            if len(texts) >= n:
                return texts, paths
    return texts, paths


def planted(texts: list[str], paths: list[str], seed: int = 0) -> np.ndarray:
    from scipy.stats import rankdata

    share = np.array([sum(1 for line in t.split("\n") if line.strip().startswith("#")) / (t.count("\n") + 1)
                      for t in texts])
    commented = 10 * (rankdata(share) - 1) / (len(texts) - 1)
    is_test = np.array([10.0 if ("/test" in p or "/tests/" in p) else 0.0 for p in paths])
    noise = np.random.default_rng(seed).normal(0, 1.5, len(texts))
    mixed = np.clip(0.5 * commented + 0.5 * is_test + noise, 0, 10)
    return np.column_stack([commented, is_test, mixed])


def held_out_spearman(pred: np.ndarray, target: np.ndarray) -> list[float]:
    from mira.students import spearman

    return [round(spearman(pred[:, j], target[:, j]) or 0.0, 3) for j in range(target.shape[1])]


def _worker_init(folder: str, warm: list[str]) -> None:
    global _STUDENT
    from mira.run.rundir import RunDir
    from mira.students import load_student

    _STUDENT = load_student(RunDir(Path(folder)), "bench")
    _STUDENT.predict(None, warm)


def _worker_predict(batch: list[str]) -> int:
    return len(_STUDENT.predict(None, batch))


def static_throughput(run_root: str, warm: list[str], texts: list[str], workers: int) -> float:
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    if workers == 1:
        _worker_init(run_root, warm)
        start = time.perf_counter()
        for batch in batches:
            _worker_predict(batch)
        return len(texts) / (time.perf_counter() - start)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(run_root, warm)) as pool:
        pool.map(_worker_predict, [warm[:64]] * workers)  # every worker has loaded and warmed up
        start = time.perf_counter()
        done = sum(pool.map(_worker_predict, batches, chunksize=1))
        return done / (time.perf_counter() - start)


def teacher_seconds(measure: int, records: list[str]) -> tuple[float, str]:
    from mira.artifacts.anchors import Anchor
    from mira.core.config import RunConfig
    from mira.corpus.records import Record, Rendering
    from mira.rubrics.annotation import build_request
    from mira.teacher import load_prompt
    from mira.teacher.usage import CHARS_PER_TOKEN, MODEL_SPEEDS

    config = RunConfig()
    anchors = [Anchor(id=f"a{i:02d}", name=f"Quality dimension {i}",
                      definition="How well the code documents its intent for a reader who did not write it.",
                      low="no comments or misleading ones", mid="some docstrings", high="clear docstrings and comments")
               for i in range(config.discovery.anchors_per_group)]
    prompt = load_prompt("annotate", 2)
    requests = []
    for i, text in enumerate(records[:max(measure, 1)]):
        record = Record(f"r{i}", "bench", "code", {}, f"bench:{i}",
                        {"code": text, "path": "x.py", "language": "python"})
        requests.append(build_request(prompt, anchors, record, Rendering(text, len(text) // 4, False),
                                      config.annotation.rationales, config.annotation.rationale_chars, f"r{i}"))
    if measure:
        from mira.run.rundir import RunDir
        from mira.teacher import open_teacher

        with tempfile.TemporaryDirectory() as tmp, open_teacher(config.teacher, RunDir(Path(tmp)), "bench") as teacher:
            start = time.perf_counter()
            teacher.run(requests)
            seconds = (time.perf_counter() - start) / len(requests)
        return seconds, f"measured: {len(requests)} annotate requests to the local {config.teacher.model}"
    generation, prompt_speed = MODEL_SPEEDS[config.teacher.model]
    request = requests[0]
    prompt_tokens = request.prompt_chars() / CHARS_PER_TOKEN
    # Grammar-constrained answers use most of the allowance when rationales are on.
    output_tokens = request.max_tokens * 0.8
    seconds = prompt_tokens / prompt_speed + output_tokens / generation
    return seconds, (f"estimated for the real annotate request ({len(anchors)} anchors, rationales "
                     f"{config.annotation.rationale_chars} chars): {prompt_tokens:.0f} prompt tokens at "
                     f"{prompt_speed:.0f} tok/s + {output_tokens:.0f} output tokens at {generation:.0f} tok/s "
                     f"(DESIGN.md's measurements of {config.teacher.model} on this 2-core machine)")


def static_part(args: argparse.Namespace, anchors: list[str], labelled_texts: list[str], Y: np.ndarray,
                train_idx: np.ndarray, val_idx: np.ndarray, stream: list[str], warm: list[str]) -> float:
    from mira.core.config import EmbedConfig, StudentConfig
    from mira.run.rundir import RunDir
    from mira.students import train

    start = time.perf_counter()
    static, info = train(StudentConfig(), EmbedConfig(), anchors, labelled_texts, ["code"] * len(labelled_texts),
                         Y, train_idx)
    static_fit = time.perf_counter() - start
    static_rho = held_out_spearman(static.predict(None, [labelled_texts[i] for i in val_idx]), Y[val_idx])
    print(f"static student: {info['regressor']} chosen {info['candidates']}; fit {static_fit:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        static.save(RunDir(Path(tmp)).path("students", "bench"))
        one = static_throughput(tmp, warm, stream, 1)
        many = static_throughput(tmp, warm, stream, args.workers) if args.workers > 1 else one
    print(f"static student (default)  : {one:8.0f} docs/s in 1 process, {many:8.0f} docs/s in {args.workers} "
          f"processes on {len(stream)} unseen 2 KB records (goal >= 3,000 on 2 cores)")
    print(f"  held-out Spearman {anchors}: {static_rho} mean {np.mean(static_rho):.3f} (fit {static_fit:.0f} s)")
    return many


def encoder_throughput(folder: Path, device: str, texts: list[str], batch_size: int) -> float:
    """Predict docs/s of the saved encoder student on `device` (warmed up; synchronised on CUDA)."""
    import torch

    from mira.students.encoder import EncoderStudent

    student = EncoderStudent.load(folder, json.loads((folder / "student.json").read_text()), device=device)
    student.batch_size = batch_size
    student.predict(None, texts[:batch_size])
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    student.predict(None, texts)  # returns numpy: every batch was copied back, so the GPU is done
    return len(texts) / (time.perf_counter() - start)


def encoder_part(args: argparse.Namespace, anchors: list[str], labelled_texts: list[str], Y: np.ndarray,
                 train_idx: np.ndarray, val_idx: np.ndarray, stream: list[str], static_dps: float) -> None:
    import torch

    from mira.core.config import StudentConfig
    from mira.students import train

    encoder_config = StudentConfig(kind="encoder", encoder_epochs=args.encoder_epochs)
    start = time.perf_counter()
    encoder, enc_info = train(encoder_config, None, anchors, labelled_texts, [], Y, train_idx)
    encoder_fit = time.perf_counter() - start
    encoder_rho = held_out_spearman(encoder.predict(None, [labelled_texts[i] for i in val_idx]), Y[val_idx])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    speeds = {}
    with tempfile.TemporaryDirectory() as tmp:
        encoder.save(Path(tmp))
        for device in devices:
            count = args.encoder_docs if device == "cpu" else len(stream)
            batch = 64 if device == "cpu" else args.gpu_batch
            speeds[device] = encoder_throughput(Path(tmp), device, stream[:count], batch)
    teacher_s, teacher_source = teacher_seconds(args.measure_teacher, stream)

    print()
    print(f"records: {len(stream)} x {RECORD_CHARS} chars")
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if "cuda" in speeds else ", no GPU"
    for device, dps in speeds.items():
        where = f"torch threads {torch.get_num_threads()}" if device == "cpu" else f"batch {args.gpu_batch}"
        print(f"encoder student (MiniLM)  : {dps:8.1f} docs/s on {device} ({where}, "
              f"{encoder_config.encoder_max_tokens} tokens{gpu if device == 'cuda' else ''})")
    if "cuda" in speeds:
        print(f"  GPU / CPU = {speeds['cuda'] / speeds['cpu']:.1f}x on this machine ({os.cpu_count()} CPUs)")
    print(f"teacher (1 request/record): {teacher_s:8.1f} s/record = {1 / teacher_s:.3f} docs/s; {teacher_source}")
    if static_dps:
        print(f"ratios: static / encoder(cpu) = {static_dps / speeds['cpu']:,.0f}x (goal >= 50x); "
              f"static / teacher = {static_dps * teacher_s:,.0f}x (goal >= 10,000x)")
    print(f"held-out Spearman {anchors}:")
    print(f"  encoder : {encoder_rho} mean {np.mean(encoder_rho):.3f} (fit {encoder_fit:.0f} s, "
          f"{args.encoder_epochs} epochs on {enc_info['device']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=8_192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--labelled", type=int, default=800)
    parser.add_argument("--encoder-epochs", type=int, default=2)
    parser.add_argument("--encoder-docs", type=int, default=256)
    parser.add_argument("--measure-teacher", type=int, default=0, metavar="N")
    parser.add_argument("--static-only", action="store_true", help="skip the encoder student (e.g. no MiniLM here)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="skip the static student (e.g. on a GPU machine without model2vec)")
    parser.add_argument("--gpu-batch", type=int, default=256, help="encoder batch size on CUDA")
    args = parser.parse_args()

    from mira.scoring.distillation import split

    files = python_files()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {len(files)} Python files")
    labelled_texts, labelled_paths = windows(files[::7], args.labelled)
    Y = planted(labelled_texts, labelled_paths)
    anchors = ["commented", "test_code", "noisy_mix"]
    sources = ["stdlib" if "site-packages" not in p else "site" for p in labelled_paths]
    train_idx, val_idx = split([f"{p}:{i}" for i, p in enumerate(labelled_paths)], sources, 0.25, seed=0)
    print(f"labelled set: {len(labelled_texts)} real 2 KB windows, planted labels {anchors}, "
          f"{len(train_idx)} train / {len(val_idx)} held out")

    stream, _ = windows(files[3::7], args.docs)  # files the labelled set never saw
    warm, _ = windows(files[5::7], 1_024)
    many = 0.0
    if not args.encoder_only:
        many = static_part(args, anchors, labelled_texts, Y, train_idx, val_idx, stream, warm)
    if args.static_only:
        return
    encoder_part(args, anchors, labelled_texts, Y, train_idx, val_idx, stream, many)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
