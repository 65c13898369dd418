"""Fingerprints of a shard's input bytes, fed while :func:`mira.io.readers.iter_shard` reads them.

Ingest records one with its token counts, score with its scores, and select recomputes it before
joining, so an input edited in place since (same size and mtime or not) is noticed.
"""

from __future__ import annotations

import hashlib

SHA256_TAG = "sha256:"


class ShardDigest:
    """The fingerprint of a shard's input bytes as read, fed by :func:`mira.io.readers.iter_shard`.

    SHA-256, tagged ``sha256:``: with the CPU's SHA extensions it hashes about twice as fast as
    blake2b-128, and every stage that reads a shard hashes all of its bytes. A digest without a tag
    is blake2b-128 from an older mira: ``like=`` that digest computes the same kind, so an older
    run directory still compares equal.
    """

    def __init__(self, like: str | None = None) -> None:
        self.legacy = like is not None and not like.startswith(SHA256_TAG)
        self._hash = hashlib.blake2b(digest_size=16) if self.legacy else hashlib.sha256()
        self.update = self._hash.update  # the bound C method: one call per line, no wrapper

    def hexdigest(self) -> str:
        return self._hash.hexdigest() if self.legacy else SHA256_TAG + self._hash.hexdigest()


def shard_digest(like: str | None = None) -> ShardDigest:
    """A fresh digest for :func:`mira.io.readers.iter_shard`, of the kind of the digest `like` when given (to
    compare with a digest an earlier stage recorded)."""
    return ShardDigest(like)
