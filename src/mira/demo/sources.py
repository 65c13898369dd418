"""Readers that turn files found on this machine into demo records, one function per source.

Every reader takes ``(rng, n)`` and returns up to ``n`` records (dicts with a stable ``id``), or
raises :class:`SourceMissing` with a one-line reason. Inputs are listed and sorted before the
seeded sampling, so the same seed gives the same records on the same machine.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mira.demo.textconv import roff_to_text, rst_sections

MAX_FILE_BYTES = 200_000  # bigger files are skipped: ingest windows long records, but a demo needs no 1 MB file
MIN_FILE_BYTES = 200
PY_DOCS = Path("/usr/share/doc/python3.11-doc/html/_sources")
MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("1", "3", "5", "8")
DOC_ROOT = Path("/usr/share/doc")
FORTUNE_ROOT = Path("/usr/share/games/fortunes")
INCLUDE_ROOT = Path("/usr/include")
_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


class SourceMissing(RuntimeError):
    """The files behind a source are not on this machine; the message says which."""


def _require(path: Path, hint: str) -> None:
    if not path.is_dir():
        raise SourceMissing(f"{path} not found ({hint})")


def _decode(raw: bytes) -> str | None:
    if b"\x00" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read(path: Path, limit: int = MAX_FILE_BYTES) -> str | None:
    """Text of a (possibly gzipped) file, or None when it is too big, binary or not UTF-8."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                raw = handle.read(limit + 1)
        else:
            if path.stat().st_size > limit:
                return None
            raw = path.read_bytes()
    except (OSError, EOFError):
        return None
    return None if len(raw) > limit else _decode(raw)


def _walk(root: Path, keep: Callable[[str], bool], skip_dirs: set[str] = _SKIP_DIRS) -> list[str]:
    """Sorted relative paths of regular files under root whose name passes `keep`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.endswith((".dist-info", ".egg-info")))
        for name in files:
            path = os.path.join(folder, name)
            if keep(name) and not os.path.islink(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)


def _take(candidates: Iterable[Any], n: int, rng: random.Random, load: Callable[[Any], dict | None]) -> list[dict]:
    """Shuffle the sorted candidates and load them until `n` are usable (load returns None to skip)."""
    order = list(candidates)
    rng.shuffle(order)
    return _take_ordered(order, n, load)


def _take_ordered(order: list[Any], n: int, load: Callable[[Any], dict | None]) -> list[dict]:
    out: list[dict] = []
    for item in order:
        if len(out) >= n:
            break
        record = load(item)
        if record is not None:
            out.append(record)
    return sorted(out, key=lambda r: r["id"])


def _round_robin(groups: dict[str, list[str]], rng: random.Random) -> list[tuple[str, str]]:
    """Interleave shuffled groups so a sample spreads over many packages, not the biggest one."""
    keys = sorted(groups)
    rng.shuffle(keys)
    queues = {k: rng.sample(sorted(groups[k]), len(groups[k])) for k in keys}
    order, depth = [], 0
    while any(depth < len(q) for q in queues.values()):
        order += [(k, queues[k][depth]) for k in keys if depth < len(queues[k])]
        depth += 1
    return order


def _code_loader(root: Path, source: str, **extra: Callable[[str], Any]) -> Callable[[str], dict | None]:
    def load(rel: str) -> dict | None:
        text = _read(root / rel)
        if text is None or len(text) < MIN_FILE_BYTES:
            return None
        return {"id": f"{source}/{rel}", "path": rel, "language": "python",
                **{k: f(rel) for k, f in extra.items()}, "content": text}
    return load


def stdlib_code(rng: random.Random, n: int) -> list[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    _require(root, "Python standard library")
    return _take(_walk(root, lambda name: name.endswith(".py")), n, rng, _code_loader(root, "stdlib_code"))


def sitepkg_code(rng: random.Random, n: int) -> list[dict]:
    root = Path(sysconfig.get_paths()["purelib"])
    _require(root, "site-packages of the running Python")
    groups: dict[str, list[str]] = {}
    for rel in _walk(root, lambda name: name.endswith(".py"), {"__pycache__"}):
        top = rel.split(os.sep)[0].removesuffix(".py")
        if top != "mira":  # our own code is not third-party data
            groups.setdefault(top, []).append(rel)
    if not groups:
        raise SourceMissing(f"no .py files in {root}")
    load = _code_loader(root, "sitepkg_code", package=lambda rel: rel.split(os.sep)[0].removesuffix(".py"))
    return _take_ordered(_round_robin(groups, rng), n, lambda item: load(item[1]))


def c_headers(rng: random.Random, n: int) -> list[dict]:
    """Header files: the record is the file itself (written as a directory of .h files)."""
    _require(INCLUDE_ROOT, "C headers, e.g. apt-get install libc6-dev")

    def load(rel: str) -> dict | None:
        text = _read(INCLUDE_ROOT / rel)
        if text is None or len(text) < MIN_FILE_BYTES:
            return None
        return {"id": f"c_headers/{rel}", "path": rel, "bytes": text.encode("utf-8")}
    return _take(_walk(INCLUDE_ROOT, lambda name: name.endswith(".h"), {"__pycache__"}), n, rng, load)


def man_pages(rng: random.Random, n: int) -> list[dict]:
    _require(MAN_ROOT, "man pages")
    per_section = [n // len(MAN_SECTIONS) + (i < n % len(MAN_SECTIONS)) for i in range(len(MAN_SECTIONS))]
    out: list[dict] = []
    for section, quota in zip(MAN_SECTIONS, per_section, strict=True):
        folder = MAN_ROOT / f"man{section}"  # English pages only: translations live in MAN_ROOT/<lang>/
        if not folder.is_dir():
            continue

        def load(name: str, folder: Path = folder, section: str = section) -> dict | None:
            source = _read(folder / name, 4 * MAX_FILE_BYTES)
            if source is None:
                return None
            title, text = roff_to_text(source)
            if len(text) < 300 or len(text) > MAX_FILE_BYTES:
                return None
            page = name.removesuffix(".gz")
            return {"id": f"man_pages/man{section}/{page}", "title": title or page, "section": section, "text": text}
        # Grouped by name prefix: man1 holds thousands of `gcloud_*` pages that would swamp a plain sample.
        groups: dict[str, list[str]] = {}
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                groups.setdefault(re.split(r"[_:.-]", path.name)[0].lower(), []).append(path.name)
        out += _take_ordered([name for _, name in _round_robin(groups, rng)], quota, load)
    if not out:
        raise SourceMissing(f"no man pages in {MAN_ROOT}/man{{{','.join(MAN_SECTIONS)}}}")
    return out


_DOC_NAME = re.compile(r"^(readme|changelog|news)", re.IGNORECASE)


def doc_readmes(rng: random.Random, n: int) -> list[dict]:
    _require(DOC_ROOT, "package documentation")
    groups: dict[str, list[str]] = {}
    for pkg in sorted(os.listdir(DOC_ROOT)):
        folder = DOC_ROOT / pkg
        if folder.is_symlink() or not folder.is_dir():  # symlinked doc dirs duplicate another package's
            continue
        names = [p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink() and _DOC_NAME.match(p.name)]
        if names:
            groups[pkg] = sorted(names)

    def load(item: tuple[str, str]) -> dict | None:
        pkg, name = item
        text = _read(DOC_ROOT / pkg / name)
        if text is None or len(text.strip()) < MIN_FILE_BYTES:
            return None
        return {"id": f"doc_readmes/{pkg}/{name}", "title": f"{pkg}: {name.removesuffix('.gz')}", "text": text}
    if not groups:
        raise SourceMissing(f"no README/changelog/NEWS files under {DOC_ROOT}")
    return _take_ordered(_round_robin(groups, rng), n, load)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "section"


def _clean_rst(body: str) -> str:
    # The table-of-contents directive renders to nothing useful as text.
    return re.sub(r"^\.\. (only:: html|contents::)[^\n]*\n(\s*\n)*(\s+\.\. contents::[^\n]*\n)?", "", body,
                  flags=re.MULTILINE).strip()


def python_faq(rng: random.Random, n: int) -> list[dict]:
    folder = PY_DOCS / "faq"
    _require(folder, "apt-get install python3.11-doc")
    pairs = []
    for path in sorted(folder.glob("*.rst.txt")):
        sections = rst_sections(path.read_text(encoding="utf-8"))
        deepest = max((level for level, _, _ in sections), default=0)
        used: set[str] = set()
        for level, heading, body in sections:
            answer = _clean_rst(body)
            # Questions are the deepest headings (or any heading asking one); category headings are not.
            if level >= 1 and (level == deepest or heading.endswith("?")) and len(answer) >= 40:
                slug = _slug(heading)
                while slug in used:
                    slug += "-2"
                used.add(slug)
                pairs.append({"id": f"python_faq/{path.name.removesuffix('.rst.txt')}/{slug}",
                              "question": heading, "answer": answer, "category": path.name.removesuffix(".rst.txt")})
    if not pairs:
        raise SourceMissing(f"no FAQ sections in {folder}")
    return sorted(rng.sample(pairs, min(n, len(pairs))), key=lambda r: r["id"])


def python_docs(rng: random.Random, n: int) -> list[dict]:
    records = python_doc_chunks()
    return sorted(rng.sample(records, min(n, len(records))), key=lambda r: r["id"])


def python_doc_chunks() -> list[dict]:
    """Every section-sized chunk of the Python reST docs (the demo samples some; the eval set takes others)."""
    _require(PY_DOCS, "apt-get install python3.11-doc")
    records = []
    for sub in ("library", "tutorial", "howto"):
        for path in sorted((PY_DOCS / sub).glob("*.rst.txt")):
            rel = f"{sub}/{path.name}"
            chunks: list[list[str]] = []
            doc_title = ""
            # Cut at the top two heading levels; deeper sections stay inside their parent.
            for level, heading, body in rst_sections(path.read_text(encoding="utf-8")):
                doc_title = doc_title or (heading if level == 0 else "")
                piece = (f"{heading}\n{'=' * len(heading)}\n\n" if heading else "") + _clean_rst(body)
                if chunks and (level > 1 or sum(map(len, chunks[-1])) < 300):
                    chunks[-1].append(piece)  # a tiny section is merged into the next one
                else:
                    chunks.append([piece])
            for i, chunk in enumerate(chunks):
                text = "\n\n".join(chunk).strip()
                if 200 <= len(text) <= MAX_FILE_BYTES:
                    records.append({"id": f"python_docs/{rel}/{i}", "title": doc_title or rel, "text": text})
    if not records:
        raise SourceMissing(f"no reST sources under {PY_DOCS}")
    return records


def fortunes(rng: random.Random, n: int) -> list[dict]:
    _require(FORTUNE_ROOT, "apt-get install fortunes")
    entries = []
    for path in sorted(FORTUNE_ROOT.iterdir()):  # top level only: the offensive set lives in off/
        if not path.is_file() or path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        raw = path.read_bytes()
        text = raw.decode("utf-8") if _decode(raw) is not None else raw.decode("latin-1")
        for i, entry in enumerate(re.split(r"^%\s*$", text, flags=re.MULTILINE)):
            if entry.strip():
                entries.append({"id": f"fortunes/{path.name}/{i}", "file": path.name, "text": entry.strip("\n")})
    if not entries:
        raise SourceMissing(f"no fortune files in {FORTUNE_ROOT}")
    chosen = rng.sample(entries, min(n, len(entries)))
    return sorted(chosen, key=lambda r: (r["file"], int(r["id"].rsplit("/", 1)[1])))
