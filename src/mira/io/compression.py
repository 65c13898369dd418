"""Opening possibly compressed input files as binary streams with bounded memory.

``.gz`` and ``.zst`` files are decompressed on the fly. A damaged file must end in an error the
reader turns into one quarantine line, never in a crash or a quiet early end: corrupt deflate
raises ``zlib.error`` and corrupt zstd ``ZstdError`` (neither is an OSError), and a zstd file cut
inside a frame is reported as truncated (zstandard's own stream reader just stops).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_CHUNK = 1 << 16


def open_binary(path: Path | str, opener: Callable[[Path | str], BinaryIO] | None = None) -> BinaryIO:
    """The decompressed bytes of `path`; `opener` opens the raw bytes (a URL's stream), default `open`."""
    raw = (opener or _open_local)(path)
    name = str(path).lower()
    if name.endswith(".gz"):
        handle = gzip.GzipFile(fileobj=raw, mode="rb")
        # GzipFile closes only a file it opened itself (its `myfileobj`): hand it ours to close too.
        handle.myfileobj = raw  # type: ignore[assignment]  # typeshed narrows it to FileIO; any stream closes
        return handle  # type: ignore[return-value]
    if name.endswith(".zst"):
        # The zstd stream has no readline; a buffered wrapper gives one with bounded memory.
        return io.BufferedReader(_ZstdStream(raw), buffer_size=_CHUNK)
    return raw


def _open_local(path: Path | str) -> BinaryIO:
    return open(path, "rb")


# Compressed bytes fed per decompress call: zstd can expand a block ~40,000x (runs of one byte), so a
# small feed keeps one call's output, and the memory it takes, bounded (~40 MB) whatever the input.
_ZSTD_FEED = 1024


class _ZstdStream(io.RawIOBase):
    """Decompressed bytes of a (multi-frame) zstd file that raise EOFError when it is truncated.

    zstandard's stream_reader ends quietly at a cut inside a frame, so a half-downloaded file
    would lose its tail without a quarantine line; here a frame left unfinished is an error.
    """

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self._raw = raw
        self._new = zstandard.ZstdDecompressor().decompressobj
        self._dobj = self._new()
        self._pending = memoryview(b"")  # decompressed, not yet read (a view: no copy per read)
        self._started = False  # bytes of the current frame have been fed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._dobj.eof:  # a frame ended; what follows is the next frame
                rest = self._dobj.unused_data
                self._dobj, self._started = self._new(), False
                if rest:
                    self._feed(rest)
                    continue
            chunk = self._raw.read(_ZSTD_FEED)
            if not chunk:
                if self._started and not self._dobj.eof:
                    raise EOFError("zstd stream ends inside a frame (truncated file)")
                return 0
            self._feed(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]  # slicing a memoryview copies nothing
        return n

    def _feed(self, data: bytes) -> None:
        self._started = True
        self._pending = memoryview(self._dobj.decompress(data))

    def close(self) -> None:
        self._raw.close()
        super().close()


def read_errors() -> tuple[type[BaseException], ...]:
    """What a damaged file raises while being read: truncated or corrupt gzip (zlib.error is not
    an OSError) and corrupt zstd (ZstdError derives from Exception only)."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstandard is a dependency; only .zst needs it
        return errors
    return (*errors, zstandard.ZstdError)
