"""Records: format detection, validation, stable ids and rendering.

Every source is rendered to text by a format-aware renderer, for the teacher and the students
alike. A record's *parts* (question / trace / answer, or the turns of an agent trajectory) are
kept apart so prompts can refer to them. Long records are shown as start/middle/end windows
within a token budget with visible elision marks, so the end of a long agent trace is judged too.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from mira.core.config import FORMATS, SourceConfig
from mira.io.readers import RawItem
from mira.text.tokens import Tokenizer
from mira.text.windows import Slices, join_windows, replay_slices, sliced, window, window_ranges

TEXT_FIELDS = ("text", "content", "body", "document", "markdown")
CODE_FIELDS = ("code", "content", "text", "source")
CODE_META = ("path", "filename", "file_path", "language", "lang", "repo_path")
QUESTION_FIELDS = ("question", "prompt", "problem", "query", "instruction", "title")
ANSWER_FIELDS = ("answer", "response", "solution", "output", "completion", "accepted_answer")
TRACE_FIELDS = ("reasoning", "trace", "thinking", "chain_of_thought", "cot", "rationale", "reasoning_trace")
MESSAGE_FIELDS = ("messages", "conversation", "conversations", "turns")

CODE_EXTENSIONS = {
    ".py": "python", ".c": "c", ".h": "c", ".cc": "c++", ".cpp": "c++", ".hpp": "c++", ".rs": "rust",
    ".go": "go", ".java": "java", ".js": "javascript", ".ts": "typescript", ".rb": "ruby", ".sh": "shell",
    ".pl": "perl", ".php": "php", ".cs": "c#", ".kt": "kotlin", ".swift": "swift", ".scala": "scala",
    ".sql": "sql", ".lua": "lua", ".r": "r", ".jl": "julia", ".m": "objective-c", ".pyi": "python",
}


class RecordError(ValueError):
    """The record cannot be used; the message is the quarantine reason."""


@dataclass
class Record:
    id: str
    source: str
    format: str
    data: dict[str, Any]
    locator: str
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique within a run: ids are only unique within their source."""
        return record_key(self.source, self.id)


def record_key(source: str, record_id: str) -> str:
    """The run-wide key of a record. Source names cannot contain "/", so the first "/" splits it."""
    return f"{source}/{record_id}"


def file_qualified_id(record: Record, file: str) -> str:
    """The id of a record of a source whose files number their records each on their own:
    ``<file>#<id>``, unique across the source. A record without an id field of its own keeps its
    id, which names its file already."""
    if record.id == fallback_id(record.source, record.locator):
        return record.id
    return f"{file}#{record.id}"


def fallback_id(source: str, locator: str) -> str:
    """The id of a record that has no `id` field: where it is."""
    return f"{source}/{locator}"


@dataclass
class Rendering:
    text: str
    tokens: int  # tokens of the full (unwindowed) rendering: what training would consume
    truncated: bool


def _first(data: dict[str, Any], names: Iterable[str]) -> tuple[str | None, Any]:
    for name in names:
        value = data.get(name)
        if value not in (None, "", [], {}):
            return name, value
    return None, None


def _is_code_path(value: Any) -> bool:
    return isinstance(value, str) and path_suffix(value).lower() in CODE_EXTENSIONS


def path_suffix(path: str) -> str:
    """``PurePath(path).suffix`` without building a path object (building one takes a third of
    the time score spends outside the student on a code source): the same rule on the last component."""
    name = path[path.rfind("/") + 1:]
    if not name or name == "." or "\0" in path:
        return PurePath(path).suffix  # a trailing "/" or "." component: pathlib's normalisation decides
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def detect_format(data: dict[str, Any]) -> str | None:
    """Guess a record's format from its field names; None if nothing fits."""
    _, messages = _first(data, MESSAGE_FIELDS)
    if isinstance(messages, list) and messages:
        agentic = "tools" in data or "functions" in data or any(
            isinstance(m, dict) and (m.get("tool_calls") or m.get("function_call")
                                     or m.get("role") in ("tool", "function", "ipython"))
            for m in messages)
        return "agent" if agentic else "chat"
    if _first(data, QUESTION_FIELDS)[0] and _first(data, ANSWER_FIELDS)[0]:
        return "qa"
    if "code" in data or (_first(data, CODE_FIELDS)[0] and any(
            _is_code_path(data.get(k)) or (k in ("language", "lang") and data.get(k)) for k in CODE_META)):
        return "code"
    if _first(data, TEXT_FIELDS)[0]:
        return "text"
    return None


def detect_source_format(samples: Iterable[dict[str, Any]]) -> str | None:
    votes = Counter(f for f in (detect_format(d) for d in samples) if f)
    return votes.most_common(1)[0][0] if votes else None


def _as_text(value: Any, what: str) -> str:
    # Only a string is text: a number, list or object in a text field is a schema mix-up (a column
    # read with the wrong meaning); rendering str(value) would score "[1, 2]" or "42" as prose.
    if isinstance(value, str):
        return value
    raise RecordError(f"field {what!r} must be text, got {_type_name(value)}")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


def _missing(data: dict[str, Any], names: Iterable[str], what: str) -> RecordError:
    present = [n for n in names if n in data]
    if present:
        return RecordError(f"empty record (field {present[0]!r} is empty)")
    return RecordError(f"missing {what} field (one of: {', '.join(names)})")


def _parts(data: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "text":
        name, value = _first(data, TEXT_FIELDS)
        if name is None:
            raise _missing(data, TEXT_FIELDS, "text")
        return {"text": _as_text(value, name),
                "title": data.get("title") if isinstance(data.get("title"), str) else None}
    if fmt == "code":
        name, value = _first(data, CODE_FIELDS)
        if name is None:
            raise _missing(data, CODE_FIELDS, "code")
        path = next((data[k] for k in ("path", "filename", "file_path", "repo_path")
                     if isinstance(data.get(k), str)), None)
        lang = data.get("language") or data.get("lang") or (
            CODE_EXTENSIONS.get(path_suffix(path).lower()) if path else None)
        return {"code": _as_text(value, name), "path": path, "language": lang}
    if fmt == "qa":
        qname, question = _first(data, QUESTION_FIELDS)
        aname, answer = _first(data, ANSWER_FIELDS)
        if qname is None:
            raise _missing(data, QUESTION_FIELDS, "question")
        if aname is None:
            raise _missing(data, ANSWER_FIELDS, "answer")
        tname, trace = _first(data, TRACE_FIELDS)
        return {"question": _as_text(question, qname), "answer": _as_text(answer, aname),
                "trace": _as_text(trace, tname) if tname else None}
    if fmt in ("chat", "agent"):
        name, messages = _first(data, MESSAGE_FIELDS)
        if name is None or not isinstance(messages, list):
            raise RecordError(f"missing messages list (one of: {', '.join(MESSAGE_FIELDS)})")
        turns = [_turn(m, i) for i, m in enumerate(messages)]
        if not turns:
            raise RecordError("messages list is empty")
        tools = data.get("tools") or data.get("functions")
        return {"turns": turns, "tools": tools if isinstance(tools, list) else None}
    raise RecordError(f"unknown format {fmt!r}")


def _turn(message: Any, index: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise RecordError(f"message {index} is not an object")
    role = message.get("role") or message.get("from") or "?"
    content = message.get("content", message.get("value"))
    if isinstance(content, list):  # OpenAI content parts
        content = "\n".join(_content_part(p, index) for p in content)
    elif content is not None and not isinstance(content, str):
        raise RecordError(f"message {index} content must be text, got {_type_name(content)}")
    calls = message.get("tool_calls") or (
        [{"function": message["function_call"]}] if message.get("function_call") else [])
    if content in (None, "") and not calls:
        raise RecordError(f"message {index} ({role}) has no content and no tool calls")
    return {"role": str(role), "content": "" if content is None else str(content), "tool_calls": calls,
            "name": message.get("name") or message.get("tool_call_id")}


def _content_part(part: Any, index: int) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and isinstance(part.get("text", ""), str):
        return part.get("text", "")
    raise RecordError(f"message {index} content part must be text, got {_type_name(part)}")


def make_record(raw: RawItem, source: SourceConfig, fmt: str, min_chars: int = 1) -> Record:
    """Validate a raw item into a Record, or raise RecordError with the quarantine reason."""
    if raw.data is None:
        raise RecordError(raw.error or "unreadable record")
    data = raw.data
    if source.fields:
        data = dict(data)
        for target, original in source.fields.items():
            if original in data:
                data[target] = data[original]
    if fmt not in FORMATS:
        detected = detect_format(data)
        if detected is None:
            raise RecordError("unknown record format (no text, code, question/answer or messages field)")
        fmt = detected
    parts = _parts(data, fmt)
    if _empty(parts, fmt, max(min_chars, 1)):
        raise RecordError("empty record")
    rid = data.get("id")
    record_id = str(rid) if isinstance(rid, (str, int)) and str(rid) else fallback_id(source.name, raw.locator)
    return Record(record_id, source.name, fmt, data, raw.locator, parts)


def _empty(parts: dict[str, Any], fmt: str, min_chars: int) -> bool:
    # `isspace` rather than `strip`, which copies every text (whole-corpus scoring reads them all).
    if fmt in ("text", "code"):  # one text: no list to build (every stage makes every record)
        text = parts[fmt]
        return len(text) < min_chars or text.isspace()
    texts = list(_texts(parts))
    return sum(map(len, texts)) < min_chars or all(not t or t.isspace() for t in texts)


def _texts(parts: dict[str, Any]) -> Iterator[str]:
    for key, value in parts.items():
        if key in ("text", "code", "question", "answer", "trace") and isinstance(value, str):
            yield value
        elif key == "turns":
            for turn in value:
                yield turn["content"]
                yield from (json.dumps(c, ensure_ascii=False) for c in turn["tool_calls"])


# --- rendering -----------------------------------------------------------------------------------

def _format_call(call: Any) -> str:
    if not isinstance(call, dict):
        return str(call)
    fn = call.get("function", call)
    name = fn.get("name", "?") if isinstance(fn, dict) else "?"
    args = fn.get("arguments", "") if isinstance(fn, dict) else ""
    if not isinstance(args, str):  # arguments must be a JSON string; show objects verbatim
        args = json.dumps(args, ensure_ascii=False)
    return f"{name}({args})"


def render_sections(record: Record) -> list[tuple[str, str]]:
    """(label, text) sections of a record, in reading order."""
    p = record.parts
    if record.format == "text":
        return [("", (f"# {p['title']}\n\n" if p.get("title") else "") + p["text"])]
    if record.format == "code":
        header = " ".join(x for x in (f"path: {p['path']}" if p.get("path") else "",
                                      f"language: {p['language']}" if p.get("language") else "") if x)
        return [(header, p["code"])]
    if record.format == "qa":
        sections = [("### Question", p["question"])]
        if p.get("trace"):
            sections.append(("### Reasoning", p["trace"]))
        sections.append(("### Answer", p["answer"]))
        return sections
    sections = []
    if p.get("tools"):
        names = [t.get("function", t).get("name", "?") if isinstance(t, dict) else str(t) for t in p["tools"]]
        sections.append(("### Tools available", ", ".join(map(str, names))))
    for turn in p["turns"]:
        label = f"[{turn['role']}" + (f" {turn['name']}" if turn.get("name") else "") + "]"
        body = turn["content"]
        for call in turn["tool_calls"]:
            body += ("\n" if body else "") + f"-> tool call: {_format_call(call)}"
        sections.append((label, body))
    return sections


def _join(sections: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"{label}\n{text}" if label else text for label, text in sections)


def full_text(record: Record) -> str:
    """The whole rendering of a record, unwindowed: what its token count (and training) is of."""
    return _join(render_sections(record))


def windows_whole(record: Record, sections: list[tuple[str, str]]) -> bool:
    """True when :func:`render` windows the full text as one sequence (not section by section)."""
    return record.format in ("chat", "agent") or len(sections) == 1


def render(record: Record, tokenizer: Tokenizer, max_tokens: int, windows: int = 3, *,
           total: int | None = None, window_bytes: list[tuple[int, int]] | Slices | None = None) -> Rendering:
    """Render a record for judging: every section gets a fair share of the token budget.

    `total` is the token count of :func:`full_text`, when the caller has it already (score
    reuses ingest's, :mod:`mira.corpus.shard_tokens`): a record that fits is then not tokenized at all.
    `window_bytes`, where the windows of a long record rendered whole lie in the UTF-8 bytes of its
    full text (recorded by ingest, which tokenized it anyway), spares tokenizing it again: the
    byte spans of its :func:`window_ranges` tokens, or the :class:`Slices` of a very long one.
    A token range decodes to exactly the bytes it spans, decoded with errors="replace" as
    tiktoken does, so the text is the same as when tokenizing.
    """
    sections = render_sections(record)
    full = _join(sections)  # = full_text(record); the sections are needed below too
    if total is None:
        total = tokenizer.count(full)
    if total <= max_tokens:
        return Rendering(full, total, False)
    whole = windows_whole(record, sections)
    if whole and window_bytes is not None and isinstance(window_bytes, Slices) == sliced(full, max_tokens):
        data = full.encode("utf-8")
        if isinstance(window_bytes, Slices):
            return Rendering(replay_slices(data, window_bytes), total, True)
        pieces = [data[a:b].decode("utf-8", "replace") for a, b in window_bytes]
        return Rendering(join_windows(total, window_ranges(total, max_tokens, windows), pieces), total, True)
    if whole:
        # A trajectory is judged as one sequence: its start, middle and end.
        cut, _ = window(full, max_tokens, tokenizer, windows)
        return Rendering(cut, total, True)
    counts = [max(1, tokenizer.count(text)) for _, text in sections]
    # Short sections keep their full text; the rest of the budget is shared by the long ones,
    # so a long trace cannot crowd out the answer it leads to.
    budget = max_tokens - sum(tokenizer.count(label) + 2 for label, _ in sections)
    shares = _fair_shares(counts, max(budget, 16 * len(sections)))
    out = []
    for (label, text), share in zip(sections, shares, strict=True):
        cut, _ = window(text, share, tokenizer, windows)
        out.append((label, cut))
    return Rendering(_join(out), total, True)


def _fair_shares(counts: list[int], budget: int) -> list[int]:
    shares = [0] * len(counts)
    remaining = sorted(range(len(counts)), key=lambda i: counts[i])
    left = budget
    while remaining:
        fair = left // len(remaining)
        i = remaining.pop(0)
        shares[i] = max(8, min(counts[i], fair))
        left -= shares[i]
    return shares
