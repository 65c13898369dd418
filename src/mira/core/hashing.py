"""Fingerprints: short, stable hashes of JSON-able values (configs, upstream fingerprints, keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")



def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]




def stable_rank(seed: int, record_id: str) -> int:
    """A seeded pseudo-random rank of a record id, stable across runs and machines."""
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
