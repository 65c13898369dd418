"""Configuration of selections and of comparing them: `selection` (with the perplexity and DataMan
baselines' settings) and `compare` (methods, known-good/bad records, proxy training).
:mod:`mira.core.config` re-exports every name; import them from there."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mira.core.config_base import (
    NAME_PATTERN,
    ConfigError,
    Section,
    SourceConfig,
    cell_entries,
    no_credentials,
    not_reserved,
)

# The ranking methods (each implemented in mira.selection.rankings, whose registry a test keeps equal).
METHOD_NAMES = ("mira", "random", "length", "dsir", "perplexity", "dataman")
# Old names a config may still carry, with the one line that says what to write instead.
RENAMED_METHODS: dict[str, str] = {
    "global_rubric": "'global_rubric' is MIRA-Global now: use `method: mira` with `mode: global`",
}


def check_method(name: str) -> str:
    """`name` if it is a ranking method, else a ConfigError (one line) listing the valid ones."""
    if name in RENAMED_METHODS:
        raise ConfigError(RENAMED_METHODS[name])
    if name not in METHOD_NAMES:
        raise ConfigError(f"unknown ranking method {name!r}; valid methods: {', '.join(sorted(METHOD_NAMES))}")
    return name


class PerplexityConfig(Section):
    """The perplexity baseline's reference language model (a hashed, Kneser-Ney smoothed n-gram
    model, KenLM-style, trained on CPU in seconds; see mira.selection.rankings.ngram)."""

    # A JSONL of reference texts (a `text` field per line), e.g. Wikipedia-like prose or code you
    # trust. None: a seeded sample of the corpus itself, cross-fitted so that no record is ever
    # scored by a model that saw it.
    reference: str | None = None
    # Records drawn (evenly over sources) when the reference is the corpus itself.
    reference_records: int = Field(2_000, ge=2)
    # The model trains on at most this many tokens of the reference, every text contributing an
    # equal share at most (long files cannot crowd out the rest); bounds training memory (~40 B/token).
    reference_tokens: int = Field(4_000_000, ge=1_000)
    # `words`: \w+ words and single punctuation marks, hashed (KenLM-like tokens; whitespace and
    # layout are not seen); `bytes`: UTF-8 bytes (sees layout; use order 5). On the demo corpus both
    # rank every held-out record above its word-shuffled and its 5%-noised copy; a words 3-gram
    # scores ~490 docs per CPU-second, a bytes 5-gram ~265 (benchmarks/baselines.py).
    level: Literal["bytes", "words"] = "words"
    order: int = Field(3, ge=1, le=8)
    # Hash buckets per table (2**bits): per order, one uint32 count table and a pair table.
    bits: int = Field(20, ge=8, le=26)
    seed: int = 0


class DataManConfig(Section):
    """The DataMan baseline: one fixed rubric (mira/selection/rankings/dataman_rubric.jsonl) for every source."""

    # Records the teacher labels (evenly over all sources) for the one student; the paper's
    # DataMan used far more, the demo default keeps the teacher cost to a few minutes.
    records: int = Field(32, ge=2)
    seed: int = 0


# Kept share of tokens when no budget key is set.
DEFAULT_BUDGET_FRACTION = 0.5
BUDGET_KEYS = ("budget_fraction", "budget_tokens", "budget")


# Settings that change how select runs, never what it writes: not part of a selection's fingerprint.
EXECUTION_ONLY = ("out_of_core", "in_memory_max_records", "out_of_core_chunk_records")


class SelectionConfig(Section):
    # The selection is written to selection/<name>/; by default the name says method, mode and
    # budget (e.g. "mira-group-50pct"), so selections with other settings coexist.
    # At most 200 characters: the folder's hidden twins (".<name>.partial", ".<name>.previous") must
    # stay within a file name's 255 bytes.
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=200)
    mode: Literal["group", "source", "global"] = "group"
    # The budget, in exactly one unit: a fraction of the tokens (0 < f <= 1) or a token count.
    # Unset both to keep DEFAULT_BUDGET_FRACTION. Read only through `budget_share`/`budget_label`.
    budget_fraction: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    budget_tokens: int | None = Field(None, gt=0)
    # The older single key, kept where its unit is unambiguous: <= 1 is a fraction, a whole number
    # > 1 a token count; anything else (1.5) is refused: read as tokens it would silently mean 1.5 tokens.
    budget: float | None = Field(None, gt=0, allow_inf_nan=False)
    # A ranking method of mira.selection.rankings (registry): mira, random, length, dsir, perplexity, dataman.
    method: str = "mira"
    # Per-source retention bounds, as fractions of the source's tokens.
    floor: dict[str, float] = Field(default_factory=dict)
    cap: dict[str, float] = Field(default_factory=dict)
    # jsonl.gz / jsonl.zst: compressed JSON lines (what dolma- and datatrove-style readers take).
    output_formats: list[Literal["jsonl", "jsonl.gz", "jsonl.zst", "parquet"]] = ["jsonl"]
    # Where `mira select` also publishes the finished selection, as <output>/<name>/: a folder or
    # any fsspec URL (s3://bucket/prefix). The run directory keeps its own copy (it stays local);
    # the published summary.json is written last (see mira.selection.publish).
    output: str | None = None
    # Records without a score (every anchor of their source masked as unreliable): `random` keeps
    # the budget's share of each such source by a seeded random draw (the source-preserving random
    # baseline, strong in the paper) instead of dropping the source; `reject` drops them.
    unscored: Literal["random", "reject"] = "random"
    # DSIR baseline: a JSONL of target texts, and the number of hashed n-gram buckets.
    dsir_target: str | None = None
    dsir_buckets: int = Field(10_000, ge=16)
    perplexity: PerplexityConfig = Field(default_factory=PerplexityConfig)
    dataman: DataManConfig = Field(default_factory=DataManConfig)
    seed: int = 0
    # How select decides (never what: both ways write byte-identical selections, so these three are
    # left out of the selection's fingerprint, EXECUTION_ONLY). In memory, select holds ~55 bytes a
    # record in the driver (0.66 GB at 10M records); out of core it sorts the records in runs of
    # out_of_core_chunk_records on disk (selection/.<name>.spill, ~140 bytes a record while it runs)
    # and its memory stays flat in corpus size (~270 bytes per chunk record: ~120 MB at 250k, 202 MB
    # in all at 10M records). "auto": out of core above in_memory_max_records.
    out_of_core: Literal["auto", "always", "never"] = "auto"
    in_memory_max_records: int = Field(5_000_000, ge=0)
    out_of_core_chunk_records: int = Field(250_000, ge=1)

    _output_has_no_credentials = field_validator("output")(no_credentials)
    _name_not_reserved = field_validator("name")(not_reserved)

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from pydantic_core import PydanticCustomError

        try:
            return check_method(method)
        except ConfigError as exc:  # a custom error: no "Value error," prefix in the one-line message
            raise PydanticCustomError("selection_method", str(exc)) from None

    @model_validator(mode="after")
    def _bounds(self) -> SelectionConfig:
        given = [k for k in BUDGET_KEYS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"set only one of selection.budget_fraction and selection.budget_tokens "
                             f"(got {' and '.join(given)})")
        if self.budget is not None and self.budget > 1 and not float(self.budget).is_integer():
            raise ValueError(f"selection.budget {self.budget:g} is ambiguous: use selection.budget_fraction "
                             "(0 < f <= 1) or selection.budget_tokens (a whole number of tokens)")
        for name, fraction in {**self.floor, **self.cap}.items():
            if not 0 <= fraction <= 1:
                raise ValueError(f"selection floor/cap for {name!r} must be a fraction in [0, 1]")
        for name, floor in self.floor.items():
            if name in self.cap and floor > self.cap[name]:
                raise ValueError(f"selection.floor[{name!r}] is above selection.cap[{name!r}]")
        if self.method == "dsir" and not self.dsir_target:
            raise ValueError("selection.method 'dsir' needs selection.dsir_target (a JSONL of target texts)")
        return self

    def budget_unit(self) -> tuple[Literal["fraction", "tokens"], float]:
        """The budget as ("fraction", f) or ("tokens", n): the one place its unit is decided."""
        if self.budget_tokens is not None:
            return "tokens", float(self.budget_tokens)
        if self.budget is not None:
            return ("fraction", self.budget) if self.budget <= 1 else ("tokens", float(self.budget))
        return "fraction", self.budget_fraction if self.budget_fraction is not None else DEFAULT_BUDGET_FRACTION

    def budget_share(self, total_tokens: float) -> float:
        """The budget as a share of `total_tokens` (a token budget over a smaller corpus is > 1)."""
        unit, value = self.budget_unit()
        return value if unit == "fraction" else value / max(total_tokens, 1)

    def budget_label(self) -> str:
        unit, value = self.budget_unit()
        return f"{value:.0%} of tokens" if unit == "fraction" else f"{int(value):,} tokens"


class ProxyConfig(Section):
    """Proxy training: does a selection help a model learn? (`compare.proxy`, issue 12).

    A small causal transformer is trained from scratch on the same number of bytes drawn from each
    selection and evaluated on held-out sets. The model reads raw UTF-8 bytes (vocabulary 256):
    bits per byte is then exact and comparable across selections with no tokenizer to fit or
    bundle, and a byte budget is the same budget for every method whatever its text looks like.
    Defaults are sized so one run takes about 1-2 minutes on a quiet 2-core CPU (1 thread: 18-24k
    training bytes/s) and separate clean from 50% junk-diluted code beyond seed noise (3 seeds:
    ~2.42 vs ~2.47 bits/byte, Welch p ~0.002). A CPU shared with other work is many times slower
    (benchmarks/proxy.py prints the figures).
    """

    # Off by default: the quick demo must not pay minutes of training per method and seed.
    enabled: bool = False
    # Three seeds is the fewest that gives a spread to compare a difference against.
    seeds: int = Field(3, ge=1, le=100)
    # The same training budget (bytes) for every selection; a smaller selection is cycled
    # (its result records epochs > 1). ~2 MB is about 80 s at the default size on 2 cores.
    train_bytes: int = Field(2_000_000, ge=1_024)
    # Bytes of context per training window: enough to see a few lines of code.
    context: int = Field(128, ge=8, le=4_096)
    # Model size: 2 layers x 128 wide (~0.48M parameters) is the largest that trains the
    # budget above in ~1-2 minutes on 2 shared CPU cores and still learns code structure.
    layers: int = Field(2, ge=1, le=48)
    d_model: int = Field(128, ge=8, le=4_096)
    heads: int = Field(4, ge=1, le=64)
    # Windows per optimizer step (16 x 128 = 2,048 bytes a step, ~1,000 steps at the default).
    batch_size: int = Field(16, ge=1)
    # AdamW peak learning rate with warmup and cosine decay; tiny models tolerate a high rate.
    learning_rate: float = Field(2e-3, gt=0, le=1)
    # Bytes evaluated per eval set (its first eval_bytes bytes, fixed windows): ~100 KB keeps
    # the seed-to-seed noise of the estimate well below the gaps the check must see.
    eval_bytes: int = Field(100_000, ge=256)
    # "auto" uses CUDA when present, else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads for torch; None uses every core. On a CPU busy with other work use 1: OpenMP
    # threads spin at every barrier: on a heavily loaded 2-core CPU two threads train at ~700 bytes/s
    # against ~11k for one (benchmarks/proxy.py).
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> ProxyConfig:
        if self.d_model % self.heads:
            raise ValueError("proxy.d_model must be a multiple of proxy.heads")
        return self


class MethodSpec(Section):
    """One selection method for `mira compare`: a ranking method and its retention mode."""

    # Checked against `selection.method` when the comparison runs (see mira.evaluation.compare.method_configs).
    method: str
    mode: Literal["group", "source", "global"] = "group"
    # Cells masked for this entry on top of `reliability.exclude` ("source/anchor", "*" for any):
    # MIRA's selection without them, an ablation. `compare.ablate` adds one such entry per cell.
    exclude: list[str] = Field(default_factory=list)

    @field_validator("exclude")
    @classmethod
    def _cells(cls, value: list[str]) -> list[str]:
        return cell_entries(value, "compare.methods exclude")

    @model_validator(mode="after")
    def _mira_only(self) -> MethodSpec:
        if self.exclude and self.method != "mira":
            raise ValueError(f"compare.methods: exclude masks MIRA's cells; it does not apply to {self.method}")
        return self


def _default_methods() -> list[MethodSpec]:
    # Ranking within sources first: every method in `source` mode keeps each source's share, so
    # against random-source (source-preserving random) a difference is the ranking alone. Then each
    # method in its native mode (MIRA-Group and MIRA-Global; perplexity and DataMan with the
    # paper's one global cutoff), where the mixture of sources moves too.
    within = [MethodSpec(method=m, mode="source") for m in ("mira", "random", "length", "perplexity", "dataman")]
    return within + [MethodSpec(method="mira", mode="group"), MethodSpec(method="mira", mode="global"),
                     MethodSpec(method="length", mode="group"), MethodSpec(method="perplexity", mode="global"),
                     MethodSpec(method="dataman", mode="global")]


class CompareConfig(Section):
    """`mira compare`: every method's selection at one budget, side by side."""

    methods: list[MethodSpec] = Field(default_factory=_default_methods, min_length=1)
    # A fraction of tokens (<= 1) or a token count (> 1); None uses selection.budget.
    budget: float | None = Field(None, gt=0)
    # Records the user knows to be good or bad: a record field (true where set and not false/empty,
    # e.g. the demo's `demo_perturbation`) or a list of record ids.
    known_good: str | list[str] | None = None
    known_bad: str | list[str] | None = None
    # Held-out evaluation sets for proxy training, shaped like `sources` entries and rendered like
    # records. They must not overlap the corpus.
    eval_sets: list[SourceConfig] = Field(default_factory=list)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    # Ablation: one more selection per cell ("cells") or per source ("sources") the MIRA selection
    # of `selection.mode` uses, without it (see MethodSpec.exclude). With proxy training, each is
    # judged against that selection: a cell whose removal trains a better proxy hurt the selection.
    ablate: Literal["cells", "sources"] | None = None
    # DataMan's teacher budget: None labels selection.dataman.records records; "match_mira" as many
    # as make its estimated prompt + output tokens equal MIRA's annotate stage's (mira.evaluation.cost).
    dataman_budget: Literal["match_mira"] | None = None
    # Annotation draws MIRA's chain is judged over (mira.evaluation.replicates): 1 judges the run's own
    # labels only; N > 1 also labels N - 1 more samples (annotation.seed + r, the teacher cache answers
    # what overlaps), distills, scores and selects on each in compare/replicates/r<r>/, and pools the
    # verdicts over the draws. Each new draw costs an annotate pass, a distill and a corpus scoring.
    replicates: int = Field(1, ge=1, le=50)

    @field_validator("methods")
    @classmethod
    def _unique_methods(cls, methods: list[MethodSpec]) -> list[MethodSpec]:
        seen = set()
        for spec in methods:
            key = (spec.method, spec.mode, tuple(sorted(spec.exclude)))
            if key in seen:
                what = f" without {', '.join(spec.exclude)}" if spec.exclude else ""
                raise ValueError(f"compare.methods lists {spec.method} ({spec.mode}){what} twice")
            seen.add(key)
        return methods

    @field_validator("eval_sets")
    @classmethod
    def _unique_eval_sets(cls, sets: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in sets]
        if len(set(names)) != len(names):
            raise ValueError("compare.eval_sets names must be unique")
        return sets
