from pathlib import PurePath

import pytest

from mira.core.config import SourceConfig
from mira.corpus.records import RecordError, detect_format, make_record, path_suffix, render, window
from mira.io.readers import RawItem
from mira.text.tokens import get_tokenizer

SRC = SourceConfig(name="s", path="x")
TOK = get_tokenizer("cl100k_base")


@pytest.mark.parametrize("data, fmt", [
    ({"text": "hello"}, "text"),
    ({"content": "x = 1", "path": "a/b.py"}, "code"),
    ({"code": "int main(){}"}, "code"),
    ({"question": "why?", "answer": "because"}, "qa"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "chat"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]}, "agent"),
    ({"foo": 1}, None),
])
def test_detect_format(data, fmt):
    assert detect_format(data) == fmt


def _record(data, fmt="auto", locator="f.jsonl:3"):
    return make_record(RawItem(locator, data), SRC, fmt)


def test_stable_ids():
    assert _record({"id": "abc", "text": "t"}).id == "abc"
    assert _record({"text": "t"}).id == "s/f.jsonl:3"


@pytest.mark.parametrize("data, fmt, reason", [
    ({"text": "   "}, "text", "empty record"),
    ({"text": ""}, "text", "empty record"),
    ({"title": "x"}, "text", "missing text field"),
    ({"question": "q"}, "qa", "missing answer field"),
    ({"messages": []}, "chat", "missing messages"),
    ({"messages": ["not an object"]}, "chat", "message 0 is not an object"),
    ({"text": {"nested": 1}}, "text", "must be text"),
    ({"foo": 1}, "auto", "unknown record format"),
])
def test_bad_records_raise_a_reason(data, fmt, reason):
    with pytest.raises(RecordError, match=reason):
        _record(data, fmt)


@pytest.mark.parametrize("data, fmt, reason", [
    ({"text": 42}, "text", "field 'text' must be text, got a number"),
    ({"text": 1.5}, "auto", "field 'text' must be text, got a number"),
    ({"text": True}, "text", "field 'text' must be text, got a boolean"),
    ({"text": ["a", "b"]}, "text", "field 'text' must be text, got a list"),
    ({"code": [1, 2]}, "code", "field 'code' must be text, got a list"),
    ({"question": "q", "answer": {"a": 1}}, "qa", "field 'answer' must be text, got an object"),
    ({"question": 7, "answer": "a"}, "qa", "field 'question' must be text, got a number"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "chat",
     "message 0 content must be text, got an object"),
    ({"messages": [{"role": "user", "content": 3}]}, "chat", "message 0 content must be text, got a number"),
    ({"messages": [{"role": "user", "content": [["nested"]]}]}, "chat", "content part must be text, got a list"),
])
def test_text_fields_that_are_not_strings_are_refused(data, fmt, reason):
    # A number, list or object in a text field is a schema mix-up, not text to judge.
    with pytest.raises(RecordError, match=reason):
        _record(data, fmt)


def test_openai_content_parts_are_still_text():
    record = _record({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, "there"]}]})
    assert record.parts["turns"][0]["content"] == "hi\nthere"


def test_field_mapping():
    src = SourceConfig(name="s", path="x", fields={"text": "body_md"})
    assert make_record(RawItem("l", {"body_md": "hi"}), src, "text").parts["text"] == "hi"


def test_agent_rendering_shows_calls_and_results():
    rec = _record({"messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "name": "get_weather", "content": "18C"},
        {"role": "assistant", "content": "18 degrees."}]})
    text = render(rec, TOK, 1000).text
    assert rec.format == "agent"
    assert '-> tool call: get_weather({"city": "Paris"})' in text
    assert "[tool get_weather]\n18C" in text


def test_long_record_windows_keep_start_middle_and_end():
    body = " ".join(f"w{i}" for i in range(5000))
    rec = _record({"text": body})
    out = render(rec, TOK, 300, windows=3)
    assert out.truncated and out.tokens > 300
    assert out.text.startswith("w0 w1") and out.text.rstrip().endswith("w4999")
    assert out.text.count("tokens elided") == 2 and "w25" in out.text
    assert TOK.count(out.text) < 400


def test_qa_answer_survives_a_long_trace():
    rec = _record({"question": "q?", "reasoning": "step " * 5000, "answer": "FINAL ANSWER 42"})
    out = render(rec, TOK, 400)
    assert "FINAL ANSWER 42" in out.text and "### Reasoning" in out.text and out.truncated


def test_window_bytes4_tokenizer():
    tok = get_tokenizer("bytes4")
    text, cut = window("abcd" * 1000, 100, tok, 3)
    assert cut and len(text) < 600


@pytest.mark.parametrize("path", [
    "a.py", "dir/b.PY", "x/y.tar.gz", ".bashrc", "dir/.hidden", "a.", "a..", "..", ".", "dir/.", "dir/..",
    "a.py/", "a.py//", "a.py/.", "a/./b.rs", "//c.go", "", "/", "no_suffix", "d.ir/file", "名前.py", "a .py",
    "a.py\x00.c", "C:\\x\\y.cpp", "a.b/c.", "...py", "x/.py", "dir\n/f.sh"])
def test_path_suffix_is_pathlibs(path):
    assert path_suffix(path) == PurePath(path).suffix


@pytest.mark.parametrize("text, empty", [
    (" \t\n\r\x0b\x0c", True), ("\u3000\u2028\u2029\x85\xa0", True), ("\x1c\x1d\x1e\x1f", True),
    ("\u200b", False), ("\x00", False), (" x ", False)])
def test_whitespace_only_text_is_empty_by_pythons_rule(text, empty):
    # Every character str.strip() removes counts as blank; a zero-width space or a NUL is content.
    for data, fmt in (({"text": text}, "text"), ({"question": text, "answer": text}, "qa")):
        if empty:
            with pytest.raises(RecordError, match="empty record"):
                _record(data, fmt)
        else:
            assert _record(data, fmt).format == fmt
