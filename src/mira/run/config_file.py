"""Reading, overriding and writing a run config: YAML file + ``--set`` overrides -> a validated
:class:`~mira.core.config.RunConfig`, and back to the YAML a run directory keeps.

Split from :mod:`mira.core.config`, which holds only the typed sections and their defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mira.core.config import BUDGET_KEYS, ConfigError, RunConfig


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
        if path[:-1] == ["selection"] and path[-1] in BUDGET_KEYS:
            # `--set selection.budget_tokens=...` on a file that says budget_fraction: the override
            # replaces the file's budget instead of making two budgets.
            for other in BUDGET_KEYS:
                node.pop(other, None)
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
    from mira.io.storage import check_url, is_url

    for source in [*config.sources, *config.compare.eval_sets]:
        if is_url(source.path):
            check_url(source.path, f"source {source.name!r}")
        elif not Path(source.path).is_absolute() and not any(c in source.path for c in "*?["):
            source.path = str((base / source.path).resolve())
        elif not Path(source.path).is_absolute():
            source.path = str(base / source.path)
    output = config.selection.output
    if output and is_url(output):
        check_url(output, "selection.output")
    elif output and not Path(output).is_absolute():
        config.selection.output = str((base / output).resolve())
    if config.run_dir and is_url(config.run_dir):
        raise ConfigError(f"run_dir must be a local folder, not {config.run_dir.split('://')[0]}://...; "
                          "object storage holds sources and selection.output")
    if config.run_dir and not Path(config.run_dir).is_absolute():
        config.run_dir = str((base / config.run_dir).resolve())
    return config


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")  # pydantic's prefix says nothing
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "invalid config: " + "; ".join(parts) + more


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, as saved in the run directory and shown by --dry-run.

    Credentials and query values in ``teacher.base_url`` are masked: they are secrets, and the
    saved file is documentation, not something mira reads back to run.
    """
    import yaml

    from mira.core.secrets import redact_url

    data = config.model_dump(mode="json")
    data["teacher"]["base_url"] = redact_url(data["teacher"].get("base_url"))
    return yaml.safe_dump(data, sort_keys=False)
