"""The dataset card of a selection, ``selection/<name>/README.md``: what ``datasets`` reads to load
the folder as one dataset, in each output format, with the selection's one schema.

    datasets.load_dataset("runs/my-run/selection/mira-group-50pct", split="train")  # the first JSON lines format
    datasets.load_dataset("runs/my-run/selection/mira-group-50pct", "jsonl_zst", split="train")
    datasets.load_dataset("parquet", data_files="runs/my-run/selection/mira-group-50pct/*/*.parquet")

A JSON reader types each file from its own values, so a column that is null throughout one file
(a field only some sources have) types as null there, and ``datasets`` refuses the next file; the
card's features give every column its type once, for all files.
"""

from __future__ import annotations

from typing import Any

CARD = "README.md"


def card_text(name: str, schema: Any, sources: list[str], formats: list[str], json_columns: list[str]) -> str:
    """The card: YAML front matter (one config per output format, each with the selection's
    features where every column's type has a ``datasets`` name) and a short description."""
    import yaml

    # `datasets` reads every config of a card with one builder: the JSON lines formats (which need the
    # card) when there are any; Parquet files carry their schema and load with `load_dataset("parquet")`.
    carded = [f for f in formats if f != "parquet"] or ["parquet"]
    configs: list[dict[str, Any]] = []
    infos: list[dict[str, Any]] = []
    names: list[str] = []
    for fmt in carded:
        config = "default" if fmt == carded[0] else fmt.replace(".", "_")
        names.append(config)
        configs.append({"config_name": config, "data_files": [
            {"split": "train", "path": [f"{source}/*.{fmt}" for source in sources]}]})
        features = _features(schema, as_json=fmt != "parquet")
        if features is not None:
            infos.append({"config_name": config, "features": features})
    front: dict[str, Any] = {"configs": configs}
    if infos:
        front["dataset_info"] = infos
    encoded = (f"Columns holding JSON texts (their values' types differ between records or sources): "
               f"{', '.join(f'`{c}`' for c in json_columns)}.\n\n" if json_columns else "")
    return (f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n# {name}\n\n"
            f"A selection written by `mira select`: the kept records of {len(sources)} sources, one file "
            f"schema for all of them. `summary.json` has the counts (records and tokens in, kept, rejected, "
            f"quarantined, and what share a random draw decided), `_decisions/` one row per input record.\n\n"
            f"Columns: the sources' own fields (null where a source has none), then `mira_id`, `mira_score` "
            f"(the reliability-masked aggregate), `mira_group`, `mira_tokens`, `mira_reason` (ranked and kept, "
            f"a source floor, or a random draw) and `mira_anchors` (per anchor of the record's group: "
            f"`<group>/<anchor>`, its name, score, and whether it is reliable for the record's source).\n\n"
            f"{encoded}Load it with `datasets.load_dataset(\"<this folder>\", split=\"train\")` (configs: "
            f"{', '.join(f'{n} ({f})' for n, f in zip(names, carded, strict=True))})"
            + (", the Parquet files with `datasets.load_dataset(\"parquet\", data_files=\"<this folder>/*/*.parquet\")`"
               if "parquet" in formats and carded != ["parquet"] else "") + ".\n")


# Arrow type names that `datasets` names the same (its Value dtypes).
_SAME = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "string", "large_string",
         "binary", "large_binary", "null", "date32", "date64"}
_FLOATS = {"halffloat": "float16", "float": "float32", "double": "float64"}
# What a JSON value can be: anything else (a timestamp, bytes) is written as its text.
_JSON_NATIVE = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "string",
                "large_string", "null", "halffloat", "float", "double"}


def _features(schema: Any, as_json: bool) -> list[dict[str, Any]] | None:
    """The features YAML of `schema` (None where a type has no name here: readers then infer)."""
    try:
        return [{"name": field.name, **_feature(field.type, as_json)} for field in schema]
    except ValueError:
        return None


def _feature(arrow_type: Any, as_json: bool) -> dict[str, Any]:
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return {"struct": [{"name": f.name, **_feature(f.type, as_json)} for f in arrow_type]}
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = _feature(arrow_type.value_type, as_json)
        key = "list" if pa.types.is_list(arrow_type) else "large_list"
        if "dtype" in inner:
            return {key: inner["dtype"]}  # a list of one type: `list: string`
        return {key: inner.get("struct", inner)}  # a list of structs: its fields; of lists: the inner list
    name = str(arrow_type)
    if as_json and name not in _JSON_NATIVE:
        return {"dtype": "string"}  # (written with str() into the JSON lines)
    if name in _SAME:
        return {"dtype": name}
    if name in _FLOATS:
        return {"dtype": _FLOATS[name]}
    if name.startswith("timestamp["):
        return {"dtype": name}
    raise ValueError(f"no datasets name for Arrow type {name}")
