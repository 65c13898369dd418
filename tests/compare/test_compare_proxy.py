"""Proxy training wiring of `mira compare`: one artifact per (selection, seed), resumable, verdicts, plot.

The trainer is a stand-in with the interface of :mod:`mira.evaluation.proxy` (``train_proxy``, ``verdict``,
``ProxyResult``) that measures something real and cheap about the texts it is given, so the wiring
(which texts, which seeds, what is reused) is tested without training a model.
"""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from mira import api
from mira.core.config import CompareConfig, SourceConfig
from mira.corpus.records import full_text
from mira.corpus.sources import iter_source_records, source_infos
from mira.evaluation.training import result_path
from mira.run.rundir import RunDir
from mira.selection.named import selection_dir
from tests.engines.doubles import build_scored_run, make_config

NAMES = ["mira-group-50pct", "random-source-50pct", "length-group-50pct"]
IGNORED = {"enabled", "seeds", "device", "threads"}


class Score(BaseModel):
    loss: float
    bpb: float
    bytes: int


class Result(BaseModel):
    seed: int
    train_bytes: int
    eval: dict[str, Score]
    config: dict

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text):
        return cls.model_validate_json(text)

    def matches(self, config) -> bool:
        return self.config == {k: v for k, v in config.model_dump(mode="json").items() if k not in IGNORED}


class StandIn:
    """Records every call; 'bits per byte' = share of non-letter bytes in the training draw + seed noise."""

    def __init__(self):
        self.calls = []

    def train_proxy(self, train_texts, eval_sets, config, seed, progress=None):
        texts = list(train_texts)
        data = "\0".join(texts).encode()[: config.train_bytes]
        self.calls.append({"seed": seed, "texts": texts, "eval_sets": dict(eval_sets)})
        base = sum(not chr(b).isalpha() for b in data) / max(1, len(data))
        scores = {name: Score(loss=(base + 0.001 * seed) * math.log(2), bpb=base + 0.001 * seed,
                              bytes=sum(len(t) for t in ts)) for name, ts in eval_sets.items()}
        return Result(seed=seed, train_bytes=len(data), eval=scores,
                      config={k: v for k, v in config.model_dump(mode="json").items() if k not in IGNORED})

    @staticmethod
    def verdict(a, b, labels=("a", "b")):
        diff = sum(a) / len(a) - sum(b) / len(b)
        return {"diff": diff, "beyond_noise": abs(diff) > 0.01, "text": f"{labels[0]} - {labels[1]} = {diff:+.4f}"}

    @property
    def api(self):
        return SimpleNamespace(train_proxy=self.train_proxy, verdict=self.verdict, ProxyResult=Result)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _config(scored, tmp_path, seeds=2):
    corpus, template = scored
    if not (tmp_path / "run").exists():
        shutil.copytree(template, tmp_path / "run")
    held_out = tmp_path / "heldout.jsonl"
    if not held_out.exists():
        held_out.write_text("".join(json.dumps({"id": f"h{i}", "text": f"held-out text number {i} " * 20}) + "\n"
                                    for i in range(30)))
    compare = CompareConfig.model_validate({
        "methods": [{"method": "mira", "mode": "group"}, {"method": "random", "mode": "source"},
                    {"method": "length", "mode": "group"}],
        "eval_sets": [{"name": "heldout", "path": str(held_out)}],
        "proxy": {"enabled": True, "seeds": seeds, "train_bytes": 4096, "eval_bytes": 1000}})
    return make_config(corpus, tmp_path / "run", compare=compare)


@pytest.mark.slow
def test_each_selection_and_seed_is_trained_once_and_resumed(scored, tmp_path):
    config = _config(scored, tmp_path)
    stand_in = StandIn()
    result = api.compare(config, proxy_api=stand_in.api)
    run = RunDir(tmp_path / "run")
    assert len(stand_in.calls) == 6 and result["proxy"]["trained"] == 6
    for name in NAMES:
        for seed in (0, 1):
            stored = json.loads(result_path(run, name, seed).read_text())
            assert stored["seed"] == seed and stored["result"]["eval"]["heldout"]["bpb"] >= 0

    # The texts given for a selection are the full renderings of exactly its kept records.
    infos = source_infos(run)
    kept_ids = set()
    for path in (selection_dir(run, "length-group-50pct") / "_decisions").glob("*/*.parquet"):
        import pyarrow.parquet as pq

        kept_ids |= {r["id"] for r in pq.read_table(path).to_pylist() if r["kept"]}
    expected = [full_text(r) for info in infos for r in iter_source_records(config, info) if r.id in kept_ids]
    assert stand_in.calls[4]["texts"] == expected
    # Eval sets are read like sources, only as far as the trainer evaluates (eval_bytes).
    heldout = stand_in.calls[0]["eval_sets"]["heldout"]
    assert 1000 <= sum(len(t) + 1 for t in heldout) < 1000 + 2 * len(heldout[0]) and len(heldout) < 30

    # Resume: everything stored is reused; nothing is trained again, the files are untouched.
    files = {p: p.read_bytes() for p in run.path("compare", "proxy").rglob("*.json")}
    again = api.compare(config, proxy_api=stand_in.api)
    assert len(stand_in.calls) == 6 and again["proxy"]["reused"] == 6 and again["proxy"]["trained"] == 0
    assert {p: p.read_bytes() for p in files} == files
    assert again["proxy"]["table"] == result["proxy"]["table"]

    # One result lost (a killed run): only that one is trained.
    result_path(run, "random-source-50pct", 1).unlink()
    api.compare(config, proxy_api=stand_in.api)
    assert [c["seed"] for c in stand_in.calls[6:]] == [1] and len(stand_in.calls) == 7

    # A third seed trains only the new seed; other proxy settings make every result stale.
    config.compare.proxy.seeds = 3
    api.compare(config, proxy_api=stand_in.api)
    assert [c["seed"] for c in stand_in.calls[7:]] == [2, 2, 2]
    config.compare.proxy.learning_rate = 1e-3
    api.compare(config, proxy_api=stand_in.api)
    assert len(stand_in.calls) == 10 + 9


@pytest.mark.slow
def test_a_damaged_or_foreign_result_is_trained_again(scored, tmp_path):
    config = _config(scored, tmp_path, seeds=1)
    stand_in = StandIn()
    api.compare(config, proxy_api=stand_in.api)
    run = RunDir(tmp_path / "run")
    result_path(run, "mira-group-50pct", 0).write_text('{"seed": 0, "result": {"trunc')
    stored = json.loads(result_path(run, "length-group-50pct", 0).read_text())
    stored["eval_sets"] = {"heldout": "another-eval-text"}
    result_path(run, "length-group-50pct", 0).write_text(json.dumps(stored))
    api.compare(config, proxy_api=stand_in.api)
    assert len(stand_in.calls) == 3 + 2


def test_table_verdicts_and_plot(scored, tmp_path):
    config = _config(scored, tmp_path, seeds=2)
    stand_in = StandIn()
    result = api.compare(config, proxy_api=stand_in.api)
    proxy = result["proxy"]
    for name in NAMES:
        entry = proxy["table"][name]["heldout"]["bpb"]
        values = [json.loads(result_path(RunDir(tmp_path / "run"), name, s).read_text())["result"]["eval"]["heldout"]
                  ["bpb"] for s in (0, 1)]
        assert entry["values"] == values and entry["mean"] == pytest.approx(sum(values) / 2)
        assert entry["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    pairs = [(v["a"], v["b"]) for v in proxy["verdicts"]]
    # Every method against source-preserving random first, then every other pair once.
    assert pairs[:2] == [("mira-group-50pct", "random-source-50pct"), ("length-group-50pct", "random-source-50pct")]
    assert sorted(pairs[2:]) == [("mira-group-50pct", "length-group-50pct")]
    for v in proxy["verdicts"]:
        assert v["better"] in (None, v["a"], v["b"]) and "text" in v
        if v["beyond_noise"]:
            assert v["better"] == (v["a"] if v["diff"] < 0 else v["b"])
    png = tmp_path / "run" / proxy["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Proxy training" in page and "data:image/png;base64," in page and "against source-preserving random" in page


def test_proxy_needs_eval_sets(scored, tmp_path):
    from mira.core.config import ConfigError

    config = _config(scored, tmp_path)
    config.compare.eval_sets = []
    with pytest.raises(ConfigError, match="eval_sets"):
        api.compare(config, proxy_api=StandIn().api)
    config.compare.eval_sets = [SourceConfig(name="gone", path=str(tmp_path / "missing.jsonl"))]
    with pytest.raises(ConfigError, match="does not exist"):
        api.compare(config, proxy_api=StandIn().api)
    assert not (tmp_path / "run" / "selection").exists()  # it failed before building anything


@pytest.mark.slow
def test_with_the_real_proxy_trainer(scored, tmp_path):
    """Through the real trainer (a tiny model, a few KB): the artifacts round-trip and resume."""
    pytest.importorskip("mira.evaluation.proxy")
    pytest.importorskip("torch")
    config = _config(scored, tmp_path, seeds=2)
    config.compare.proxy = config.compare.proxy.model_copy(update={
        "train_bytes": 2048, "context": 32, "layers": 1, "d_model": 16, "heads": 2, "batch_size": 4,
        "eval_bytes": 512, "device": "cpu", "threads": 1})
    first = api.compare(config)
    assert first["proxy"]["trained"] == 6 and len(first["proxy"]["verdicts"]) == 3
    assert all(isinstance(v["beyond_noise"], bool) for v in first["proxy"]["verdicts"])
    again = api.compare(config)
    assert again["proxy"]["reused"] == 6 and again["proxy"]["table"] == first["proxy"]["table"]


@pytest.mark.slow
def test_a_crash_mid_training_keeps_the_finished_results(scored, tmp_path):
    config = _config(scored, tmp_path, seeds=2)
    stand_in = StandIn()
    train = stand_in.train_proxy

    def crash_on_third(*args, **kwargs):
        if len(stand_in.calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the third training run
        return train(*args, **kwargs)

    broken = SimpleNamespace(train_proxy=crash_on_third, verdict=stand_in.verdict, ProxyResult=Result)
    with pytest.raises(KeyboardInterrupt):
        api.compare(config, proxy_api=broken)
    run = RunDir(tmp_path / "run")
    stored = sorted(p.name for p in run.path("compare", "proxy").rglob("*") if p.is_file())
    assert stored == ["seed0.json", "seed1.json"]
    result = api.compare(config, proxy_api=stand_in.api)
    assert result["proxy"]["reused"] == 2 and result["proxy"]["trained"] == 4 and len(stand_in.calls) == 6


@pytest.mark.slow
def test_selections_that_keep_the_same_records_share_their_runs(scored, tmp_path):
    # With every cell masked (thresholds no student meets) MIRA falls back to the source-preserving
    # random share for every source: exactly random's records, so the same training bytes.
    config = _config(scored, tmp_path, seeds=2)
    for path in (tmp_path / "run" / "students").glob("*/mask.json"):
        mask = json.loads(path.read_text())
        for cells in mask["cells"].values():
            for cell in cells.values():
                cell.update(masked=True, reason="test: unreliable")
        path.write_text(json.dumps(mask))
    stand_in = StandIn()
    result = api.compare(config, proxy_api=stand_in.api)
    proxy = result["proxy"]
    assert proxy["identical"] == {"random-source-50pct": "mira-group-50pct"}
    assert proxy["trained"] == 4 and proxy["shared"] == 2 and len(stand_in.calls) == 4
    assert proxy["table"]["random-source-50pct"] == proxy["table"]["mira-group-50pct"]
    stored = json.loads(result_path(RunDir(tmp_path / "run"), "random-source-50pct", 1).read_text())
    assert stored["same_records_as"] == "mira-group-50pct" and stored["selection"] == "random-source-50pct"
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Identical selections:" in page and "random-source-50pct = mira-group-50pct" in page
    again = api.compare(config, proxy_api=stand_in.api)  # stored results are reused as any other
    assert again["proxy"]["reused"] == 6 and len(stand_in.calls) == 4


def test_results_are_keyed_by_the_kept_records_not_the_selection_fingerprint(scored, tmp_path):
    # A reliability setting changes every selection's fingerprint (select hashes that section); where
    # it changes no kept record (here: the test masks record no thresholds), nothing trains again.
    config = _config(scored, tmp_path, seeds=1)
    stand_in = StandIn()
    api.compare(config, proxy_api=stand_in.api)
    run = RunDir(tmp_path / "run")
    before = {n: json.loads(result_path(run, n, 0).read_text()) for n in NAMES}
    config.reliability.max_mae = 2.4
    again = api.compare(config, proxy_api=stand_in.api)
    fingerprints = {m["name"]: m["fingerprint"] for m in again["methods"]}
    assert all(fingerprints[n] != before[n]["selection_fingerprint"] for n in NAMES)
    assert again["proxy"]["reused"] == 3 and len(stand_in.calls) == 3
    assert {n: json.loads(result_path(run, n, 0).read_text()) for n in NAMES} == before
    # Other kept records under the same selection name are another training set: MIRA with every
    # cell masked keeps random's records, so its stored result is replaced by random's.
    for path in run.path("students").glob("*/mask.json"):
        mask = json.loads(path.read_text())
        for cells in mask["cells"].values():
            for cell in cells.values():
                cell.update(masked=True, reason="test: unreliable")
        path.write_text(json.dumps(mask))
    api.compare(config, proxy_api=stand_in.api)
    stored = json.loads(result_path(run, "mira-group-50pct", 0).read_text())
    assert stored["records"] == before["random-source-50pct"]["records"] != before["mira-group-50pct"]["records"]


def test_a_result_stored_before_the_records_key_is_matched_by_fingerprint_and_restamped(scored, tmp_path):
    config = _config(scored, tmp_path, seeds=1)
    stand_in = StandIn()
    api.compare(config, proxy_api=stand_in.api)
    run = RunDir(tmp_path / "run")
    path = result_path(run, "length-group-50pct", 0)
    stored = json.loads(path.read_text())
    records = stored.pop("records")
    path.write_text(json.dumps(stored))  # as an older mira wrote it
    again = api.compare(config, proxy_api=stand_in.api)
    assert len(stand_in.calls) == 3 and again["proxy"]["reused"] == 3
    assert json.loads(path.read_text())["records"] == records
    # Another fingerprint and no records key: it cannot be known to match, so it is trained again.
    stored["selection_fingerprint"] = "0" * 16
    path.write_text(json.dumps(stored))
    api.compare(config, proxy_api=stand_in.api)
    assert len(stand_in.calls) == 4


def test_verdicts_against_random_are_paired_and_holm_corrected():
    from mira.evaluation.proxy import verdict
    from mira.evaluation.training import pairwise_verdicts

    def runs(values):  # per seed: bits per byte on eval sets e1 and e2
        return [SimpleNamespace(eval={"e1": SimpleNamespace(bpb=v), "e2": SimpleNamespace(bpb=v + 0.5)})
                for v in values]

    random = [2.00, 2.10, 2.05, 2.20]
    # "steady" is 0.02 better on every seed (paired: beyond noise even after Holm); "lucky" wins
    # by a varying margin, p ~0.03 alone, which four tests against random do not survive.
    results = {"random-source-50pct": runs(random),
               "steady": runs([v - 0.02 + e for v, e in zip(random, [0.001, -0.001, 0.0, 0.0005], strict=True)]),
               "lucky": runs([v - d for v, d in zip(random, [0.01, 0.03, 0.02, 0.012], strict=True)])}
    selections = {"random-source-50pct": {"method": "random"}, "steady": {"method": "mira"},
                  "lucky": {"method": "length"}}
    out = pairwise_verdicts(SimpleNamespace(verdict=verdict), results, ["e1", "e2"], selections)
    family = [v for v in out if v["vs_random"]]
    assert len(family) == 4 and all(v["family"] == 4 and v["test"] == "paired_t" for v in family)
    lucky = next(v for v in family if v["a"] == "lucky" and v["eval_set"] == "e1")
    assert lucky["p"] < 0.05 and lucky["p_holm"] == pytest.approx(min(1.0, 2 * lucky["p"]))
    assert not lucky["beyond_noise"] and lucky["better"] is None
    assert "within it over the family" in lucky["text"] and "Holm p=" in lucky["text"]
    steady = next(v for v in family if v["a"] == "steady" and v["eval_set"] == "e2")
    assert steady["beyond_noise"] and steady["better"] == "steady" and steady["p_holm"] < 0.05
    assert steady["seeds_needed"] == 2 and steady["high"] < 0
    # A pair of two methods is not in the family: its plain p decides.
    other = next(v for v in out if not v["vs_random"])
    assert other["p_holm"] is None and other["family"] is None
    assert other["beyond_noise"] == (other["p"] < 0.05)
    # A method that keeps random's very records (every cell masked) is no test: outside the family,
    # whose other tests are not corrected for it.
    results["twin"] = results["random-source-50pct"]
    selections["twin"] = {"method": "mira"}
    out = pairwise_verdicts(SimpleNamespace(verdict=verdict), results, ["e1", "e2"], selections,
                            {"twin": "random-source-50pct"})
    twins = [v for v in out if v["a"] == "twin" and v["vs_random"]]
    assert len(twins) == 2 and all(v["same_records"] and v["p_holm"] is None and not v["beyond_noise"] for v in twins)
    assert {v["family"] for v in out if v["vs_random"] and v["a"] != "twin"} == {4}


class PairedStandIn(StandIn):
    """The stand-in trainer with the real (paired) verdict, and a seed effect shared by every selection."""

    def train_proxy(self, train_texts, eval_sets, config, seed, progress=None):
        result = super().train_proxy(train_texts, eval_sets, config, seed, progress)
        for score in result.eval.values():
            score.bpb += 0.05 * (seed % 2) + 0.0003 * seed * seed  # moves every selection alike
        return result

    @staticmethod
    def verdict(a, b, labels=("a", "b")):
        from mira.evaluation.proxy import verdict

        return verdict(a, b, labels=labels)


@pytest.mark.slow
def test_summary_table_and_report_show_paired_verdicts(scored, tmp_path):
    from mira.evaluation.tables import summary_lines

    config = _config(scored, tmp_path, seeds=3)
    result = api.compare(config, proxy_api=PairedStandIn().api)
    family = [v for v in result["proxy"]["verdicts"] if v["vs_random"]]
    assert len(family) == 2 and all(v["family"] == 2 and v["test"] == "paired_t" for v in family)
    # The seed effect is the same for every selection, so the paired differences do not spread.
    assert all(v["sd_diff"] == pytest.approx(0, abs=1e-12) and v["seeds_needed"] == 2 for v in family)
    lines = [text for text, _ in summary_lines(result)]
    header = next(i for i, t in enumerate(lines) if t.startswith("proxy: each against random-source-50pct"))
    assert "paired by seed, Holm over 2 tests" in lines[header] and "95% CI" in lines[header + 1]
    rows = lines[header + 2: header + 4]
    assert [r.split()[0] for r in rows] == ["mira-group-50pct", "length-group-50pct"]
    for row, v in zip(rows, family, strict=True):
        assert f"{v['diff']:+.4f}" in row and f"{v['low']:+.4f}..{v['high']:+.4f}" in row
        assert row.endswith("better" if v["better"] == v["a"] else "worse" if v["better"] else "within noise")
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Holm p" in page and "seeds for 80% power" in page and "paired t" in page
