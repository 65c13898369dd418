"""Proxy training (mira.evaluation.proxy): draws, determinism, exact bits per byte, artifacts, verdicts, and an
instrument check that the proxy sees data quality at a tiny size."""

from __future__ import annotations

import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mira.core.config import ConfigError, ProxyConfig
from mira.evaluation.proxy import ProxyResult, bits_per_byte, train_proxy, verdict
from mira.evaluation.proxy.data import DOC_END, draw_training_bytes, eval_bytes

# Seconds on a shared 2-core CPU; one thread so results are bitwise repeatable and no OpenMP
# oversubscription slows the suite.
TINY = ProxyConfig(train_bytes=24_576, context=32, layers=1, d_model=32, heads=2, batch_size=8,
                   learning_rate=0.01, eval_bytes=4_000, device="cpu", threads=1)


def stdlib_sources(names: list[str]) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [(root / name).read_text(encoding="utf-8") for name in names]


@pytest.fixture(scope="module")
def code() -> dict[str, list[str]]:
    train = stdlib_sources(["argparse.py", "textwrap.py", "shlex.py", "configparser.py"])
    heldout = stdlib_sources(["fnmatch.py", "glob.py", "bisect.py", "calendar.py"])
    return {"train": train, "heldout": heldout}


def test_import_does_not_load_torch():
    script = "import sys, mira.evaluation.proxy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", script], check=True)


def test_draw_is_exact_seeded_and_samples_the_whole_selection():
    docs = [f"doc{i:03d} " + "x" * 92 for i in range(200)]  # 100 bytes each with DOC_END
    first = draw_training_bytes(docs, 1_000, seed=3)
    assert len(first.data) == 1_000
    assert first == draw_training_bytes(iter(docs), 1_000, seed=3)  # a generator gives the same draw
    assert first.data != draw_training_bytes(docs, 1_000, seed=4).data
    assert (first.selection_docs, first.selection_bytes) == (200, 200 * 100)
    assert first.epochs == pytest.approx(0.05)
    picked = {int(chunk[3:6]) for chunk in first.data.split(DOC_END) if chunk.startswith(b"doc")}
    assert len(picked) == 10
    # A random sample, not the stream's head: documents come from all over the selection.
    assert max(picked) > 50


def test_draw_cycles_a_small_selection_with_every_document():
    docs = ["alpha", "beta", "gamma"]
    draw = draw_training_bytes(docs, 100, seed=0)
    assert len(draw.data) == 100
    assert draw.epochs == pytest.approx(100 / 17)
    assert draw.pieces_used >= 3 * 5
    assert {b"alpha", b"beta", b"gamma"} <= set(draw.data.split(DOC_END))


def test_draw_samples_pieces_of_large_documents():
    docs = [letter * 9_999 for letter in "abcd"]  # 20 pieces of 500 bytes each
    draw = draw_training_bytes(docs, 4_000, seed=0, piece_bytes=500)
    assert draw.pieces_used == 8 and len(set(draw.data)) > 1  # pieces of several documents


def test_draw_rejects_empty_selection_and_non_text():
    with pytest.raises(ConfigError, match="no text"):
        draw_training_bytes([], 100, seed=0)
    with pytest.raises(ConfigError, match="no text"):
        draw_training_bytes(iter([]), 100, seed=0)
    with pytest.raises(ConfigError, match="no text"):
        draw_training_bytes(["", ""], 100, seed=0)
    with pytest.raises(TypeError, match="not str"):
        draw_training_bytes(["ok", b"bytes"], 100, seed=0)  # type: ignore[list-item]


def test_eval_bytes_is_the_head_of_the_set():
    assert eval_bytes(["héllo", "world"], 5) == "héllo".encode()[:6]
    assert eval_bytes(["ab"], 100) == b"ab" + DOC_END


@pytest.mark.slow
def test_same_seed_same_result_and_other_seed_differs(code):
    first = train_proxy(code["train"], {"heldout": code["heldout"]}, TINY, seed=7)
    again = train_proxy(code["train"], {"heldout": code["heldout"]}, TINY, seed=7)
    other = train_proxy(code["train"], {"heldout": code["heldout"]}, TINY, seed=8)
    assert first.eval == again.eval
    assert first.final_train_loss == again.final_train_loss
    assert other.eval["heldout"].loss != first.eval["heldout"].loss
    assert first.train_bytes == TINY.train_bytes and first.eval["heldout"].bytes == TINY.eval_bytes
    assert first.epochs < 1 and first.device == "cpu" and first.params > 0
    # It learned something: far below a uniform guess over 256 bytes (8 bits per byte).
    assert first.eval["heldout"].bpb < 6.5


def test_caller_torch_state_is_left_alone(code):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the run uses 1 (TINY), and must put 2 back
    try:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        train_proxy(code["train"][:1], {"h": code["heldout"][:1]}, TINY, seed=0)
        assert torch.equal(torch.rand(3), expected)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _NextByteModel:
    """Stands in for the trained model: logit 10 on (input byte + 1) mod 256, 0 elsewhere."""

    def __call__(self, tokens):
        import torch

        return 10.0 * torch.nn.functional.one_hot((tokens + 1) % 256, 256).float()

    def eval(self):
        return self

    def train(self):
        return self


@pytest.mark.parametrize("length", [1, 31, 32, 33, 100, 1_000])
def test_eval_loss_and_bpb_are_exact(length):
    import torch

    from mira.evaluation.proxy.train import _evaluate, _NullTask

    counting = bytes(i % 256 for i in range(length + 1))  # each next byte is the previous + 1
    score = _evaluate(_NextByteModel(), counting, 32, 4, torch.device("cpu"), _NullTask())
    right = -math.log(math.exp(10) / (math.exp(10) + 255))
    assert score.bytes == length
    assert score.loss == pytest.approx(right, abs=1e-5)
    assert score.bpb == pytest.approx(right / math.log(2), abs=1e-5)
    # Shifted the wrong way (predicting the current byte), every byte is a miss.
    constant = bytes([7]) * (length + 1)
    wrong = -math.log(1 / (math.exp(10) + 255))
    miss = _evaluate(_NextByteModel(), constant, 32, 4, torch.device("cpu"), _NullTask())
    assert miss.loss == pytest.approx(wrong, abs=1e-5)


def test_bits_per_byte_of_a_uniform_model_is_eight():
    assert bits_per_byte(math.log(256)) == pytest.approx(8.0)
    assert bits_per_byte(math.log(2)) == pytest.approx(1.0)


def test_result_json_round_trip_and_staleness(code):
    result = train_proxy(code["train"][:2], {"a": code["heldout"][:1], "b": ["x = 1\n" * 50]}, TINY, seed=1)
    restored = ProxyResult.from_json(result.to_json())
    assert restored == result
    assert set(restored.eval) == {"a", "b"}
    assert restored.matches(TINY)
    assert restored.matches(TINY.model_copy(update={"seeds": 5, "threads": 2, "enabled": True}))
    assert not restored.matches(TINY.model_copy(update={"train_bytes": 50_000}))
    with pytest.raises(ValidationError):
        ProxyResult.from_json(result.to_json()[:-20])
    with pytest.raises(ValidationError):
        ProxyResult.from_json('{"seed": 1}')


def test_progress_reaches_its_total_and_closes(code):
    calls: list = []

    class Task:
        def __init__(self, total):
            self.total, self.done, self.closed = total, 0, False
            calls.append(self)

        def advance(self, n=1):
            self.done += n

        def close(self):
            self.closed = True

    train_proxy(code["train"][:1], {"h": code["heldout"][:2]}, TINY, seed=0,
                progress=lambda description, total: Task(total))
    assert len(calls) == 1 and calls[0].closed and calls[0].done == calls[0].total > 0


def test_user_errors_are_one_line(code):
    with pytest.raises(ConfigError, match="eval set 'empty'"):
        train_proxy(code["train"][:1], {"empty": []}, TINY, seed=0)
    with pytest.raises(TypeError, match="sequence of texts"):
        train_proxy(code["train"][:1], {"oops": "a single string"}, TINY, seed=0)  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="no text"):
        train_proxy([], {"h": code["heldout"]}, TINY, seed=0)
    with pytest.raises(ValueError, match="seed must be"):
        train_proxy(code["train"][:1], {"h": code["heldout"]}, TINY, seed=-1)
    with pytest.raises(ValidationError, match="multiple of"):
        ProxyConfig(d_model=30, heads=4)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            train_proxy(code["train"][:1], {"h": code["heldout"]}, TINY.model_copy(update={"device": "cuda"}), seed=0)


def test_odd_unicode_trains():
    texts = ["\ud800 lone surrogate", "emoji 🙂 and RTL \u202e", "\x00 nul inside", "ok"]
    result = train_proxy(texts, {"h": ["\ud83d broken pair", "fine"]}, TINY, seed=0)
    assert result.epochs > 1 and math.isfinite(result.eval["h"].loss)


def test_verdict_is_paired_by_seed_and_matches_scipy():
    from scipy import stats

    a, b = [2.10, 2.12, 2.11], [2.30, 2.33, 2.29]
    out = verdict(a, b, labels=("clean", "junk"))
    assert out["test"] == "paired_t" and out["beyond_noise"] and out["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert out["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    diffs = np.subtract(a, b)
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert (out["low"], out["high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert out["sd_diff"] == pytest.approx(diffs.std(ddof=1)) and out["wilcoxon_p"] is None  # 3 pairs: no check
    assert "clean - junk" in out["text"] and "beyond seed noise" in out["text"] and "paired t" in out["text"]

    same = verdict(a, list(a))
    assert not same["beyond_noise"] and same["p"] == pytest.approx(1.0) and same["diff"] == 0
    assert same["seeds_needed"] is None
    # A seed moves both arms alike (the same initial weights and batches): pairing sees a steady
    # 0.02 gap that Welch's unpaired test, blind to the pairing, leaves within noise.
    base = [2.10, 2.30, 2.20, 2.40]
    shifted = [v + 0.02 + e for v, e in zip(base, [0.001, -0.002, 0.0, 0.001], strict=True)]
    paired = verdict(base, shifted)
    unpaired = verdict(base, shifted, paired=False)
    assert paired["beyond_noise"] and paired["high"] < 0 and paired["seeds_needed"] <= 3
    assert unpaired["test"] == "welch_t" and not unpaired["beyond_noise"]
    assert unpaired["p"] == pytest.approx(stats.ttest_ind(base, shifted, equal_var=False).pvalue)
    noisy = verdict([2.1, 2.3, 2.0], [2.15, 2.25, 2.05])
    assert not noisy["beyond_noise"] and noisy["low"] < 0 < noisy["high"]
    assert "within seed noise" in noisy["text"]


def test_wilcoxon_checks_from_six_pairs():
    from scipy import stats

    a = [2.10, 2.31, 2.22, 2.40, 2.15, 2.27, 2.33]
    b = [2.13, 2.35, 2.22 + 0.011, 2.46, 2.16, 2.30, 2.31]
    out = verdict(a, b)
    assert out["wilcoxon_p"] == pytest.approx(stats.wilcoxon(np.subtract(a, b)).pvalue)
    assert "Wilcoxon p=" in out["text"]
    assert verdict(a[:5], b[:5])["wilcoxon_p"] is None
    assert verdict([1.0] * 6, [1.0] * 6)["wilcoxon_p"] == 1.0


def test_seeds_needed_for_80_percent_power():
    from mira.evaluation.proxy.verdict import seeds_for_power

    # ((1.95996 + 0.84162) * 0.03 / 0.025)^2 = 11.30 -> 12 seeds
    assert seeds_for_power(-0.025, 0.03) == 12
    assert seeds_for_power(0.025, 0.03) == 12
    assert seeds_for_power(0.01, 0.03) == 71  # (2.80158 * 3)^2 = 70.64
    assert seeds_for_power(0.0, 0.03) is None and seeds_for_power(0.5, 0.0) == 2
    out = verdict([2.10, 2.13, 2.11, 2.16], [2.12, 2.12, 2.15, 2.16])
    assert out["seeds_needed"] == seeds_for_power(out["diff"], out["sd_diff"])
    assert f"{out['seeds_needed']} seeds for 80% power" in out["text"]
    # The formula's promise, checked by simulation: at the seeds it names, a paired t-test calls a
    # true difference of that size about 80% of the time (a little less: the t needs a seed more).
    from scipy import stats

    rng = np.random.default_rng(0)
    n = seeds_for_power(0.02, 0.03)
    called = np.mean([stats.ttest_1samp(rng.normal(0.02, 0.03, n), 0).pvalue < 0.05 for _ in range(2000)])
    assert 0.72 < called < 0.85, called


def test_holm_adjusts_in_the_given_order():
    from mira.evaluation.proxy.verdict import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5] and holm([]) == [] and holm([0.9, 0.8]) == [1.0, 1.0]


def test_verdict_edge_cases():
    assert verdict([1.0, 1.0], [2.0, 2.0])["beyond_noise"]  # no spread: any gap is beyond it
    assert not verdict([1.0, 1.0], [1.0, 1.0])["beyond_noise"]
    assert verdict([1.0, 1.0], [2.0, 2.0], paired=False)["beyond_noise"]
    single = verdict([1.0], [2.0])
    assert single["p"] is None and not single["beyond_noise"] and "at least 2 seeds" in single["text"]
    assert verdict([1.0], [2.0, 2.1], paired=False)["p"] is None
    with pytest.raises(ValueError, match="one value per seed"):
        verdict([1.0], [2.0, 2.1])
    with pytest.raises(ValueError, match="finite"):
        verdict([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        verdict([], [1.0])
    with pytest.raises(ValueError, match="alpha"):
        verdict([1.0, 2.0], [1.0, 2.0], alpha=1.5)


@pytest.mark.slow
def test_instrument_clean_beats_heavily_diluted(code):
    """The proxy must see data quality: the same code, 80% of it replaced by random printable noise,
    loses on held-out code beyond seed noise."""
    rng = np.random.default_rng(0)
    clean = code["train"]
    diluted = list(clean)
    for index in range(len(clean)):
        # Four noise documents per clean one, each the size of a clean one.
        for _ in range(4):
            noise = rng.integers(32, 127, size=len(clean[index].encode()), dtype=np.uint8)
            diluted.append(noise.tobytes().decode("ascii"))
    sets = {"heldout": code["heldout"]}
    clean_bpb = [train_proxy(clean, sets, TINY, seed=s).eval["heldout"].bpb for s in range(3)]
    diluted_bpb = [train_proxy(diluted, sets, TINY, seed=s).eval["heldout"].bpb for s in range(3)]
    out = verdict(clean_bpb, diluted_bpb)
    assert out["diff"] < 0 and out["beyond_noise"], out["text"]
