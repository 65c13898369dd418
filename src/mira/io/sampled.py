"""Reading a few items of a shard by their positions, as the sample index finds them.

:func:`read_items` yields exactly what :func:`mira.io.readers.iter_shard` would at those positions (same
locators, same data) without parsing the rest: a plain JSONL shard seeks to each item's byte offset, a
compressed one is read line by line up to the last wanted position, a Parquet shard reads only the row
groups holding a wanted row, a folder shard only the wanted files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from mira.io.compression import open_binary
from mira.io.readers import (
    RawItem,
    Shard,
    approx_size,
    file_label,
    io_errors,
    is_seekable,
    line_item,
    read_line,
    read_text_file,
)
from mira.io.storage import Storage, check_transport, is_url, open_input


def read_items(shard: Shard, wanted: dict[int, int], max_bytes: int,
               storage: Storage = None) -> Iterator[tuple[int, RawItem]]:
    """The items at some stream positions of a shard, as :func:`mira.io.readers.iter_shard` would yield them
    (same locators), in position order; every other item is skipped without being parsed.

    `wanted` maps a position to the item's byte offset, which a plain JSONL shard seeks to; a
    compressed one is read line by line up to the last wanted position, a Parquet shard reads only
    the row groups holding a wanted row, a folder shard only the wanted files. `storage` as in
    :func:`mira.io.readers.iter_shard`. A lost connection stops the caller as it stops `iter_shard`.
    """
    try:
        yield from _read_items(shard, wanted, max_bytes, storage)
    except io_errors() as exc:
        if shard.files:
            check_transport(exc, shard.files[0], storage)
        raise


def _read_items(shard: Shard, wanted: dict[int, int], max_bytes: int,
                storage: Storage) -> Iterator[tuple[int, RawItem]]:
    positions = sorted(wanted)
    if not positions:
        return

    def located(name: str) -> tuple[Path | str, str]:
        return (name if is_url(name) else Path(name)), file_label(name, shard.base)

    if shard.reader == "files":
        for pos in positions:
            path, rel = located(shard.files[pos])
            yield pos, read_text_file(path, rel, max_bytes, storage=storage)
        return
    path, rel = located(shard.files[0])
    if shard.reader == "parquet":
        yield from _parquet_rows(path, rel, shard, positions, max_bytes, storage)
        return
    with open_binary(path, lambda name: open_input(name, storage)) as handle:
        if is_seekable(path):
            for pos in positions:
                handle.seek(wanted[pos])
                line, nbytes = read_line(handle, max_bytes)
                yield pos, line_item(f"{rel}:{shard.first_line + pos}", line, nbytes, max_bytes)
            return
        if shard.offset:
            handle.seek(shard.offset)
        todo = set(positions)
        pos = 0
        while todo:
            line, nbytes = read_line(handle, max_bytes)
            if nbytes == 0:
                return
            if pos in todo:
                todo.discard(pos)
                yield pos, line_item(f"{rel}:{shard.first_line + pos}", line, nbytes, max_bytes)
            pos += 1


def _parquet_rows(path: Path | str, rel: str, shard: Shard, positions: list[int],
                  max_bytes: int, storage: Storage) -> Iterator[tuple[int, RawItem]]:
    with contextlib.ExitStack() as stack:
        yield from _parquet_rows_from(stack, path, rel, shard, positions, max_bytes, storage)


def _parquet_rows_from(stack: contextlib.ExitStack, path: Path | str, rel: str, shard: Shard, positions: list[int],
                       max_bytes: int, storage: Storage) -> Iterator[tuple[int, RawItem]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(stack.enter_context(open_input(path, storage)) if is_url(path) else path)
    meta = pf.metadata
    first_row = sum(meta.row_group(g).num_rows for g in range(shard.offset))
    last = pf.num_row_groups if shard.count is None else shard.offset + shard.count
    start, todo = 0, list(positions)
    for g in range(shard.offset, last):
        rows = meta.row_group(g).num_rows
        mine = [p for p in todo if start <= p < start + rows]
        if mine:
            table = pf.read_row_group(g).take([p - start for p in mine])
            for pos, data in zip(mine, table.to_pylist(), strict=True):
                nbytes = approx_size(data)
                locator = f"{rel}:row {first_row + pos}"
                if nbytes > max_bytes:
                    yield pos, RawItem(locator, None, f"record larger than {max_bytes} bytes ({nbytes} bytes)", nbytes)
                else:
                    yield pos, RawItem(locator, data, None, nbytes)
        start += rows
