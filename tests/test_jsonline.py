"""The orjson fast path of mira.io.jsonline accepts, refuses and decodes exactly like the stdlib path."""

import json
import random

import pytest

from mira.io import jsonline
from mira.io.jsonline import decode_json_object

SURROGATE = "lone UTF-16 surrogate escape (not encodable as UTF-8)"
DEEP = "malformed JSON: nested too deeply"

# (line, expected value or None, expected reason or None); the reasons are the stdlib path's texts.
TABLE = [
    (b'{"a": "\\ud800"}', None, SURROGATE),
    (b'{"\\udc00": 1}', None, SURROGATE),
    (b'{"a": "\\ude00\\ud83d"}', None, SURROGATE),  # a pair in the wrong order is two lone halves
    (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001F600"}, None),
    (b'{"a": "\\uD834\\uDD1E"}', {"a": "\U0001D11E"}, None),
    (b'{"a": "\xff"}', None, "not valid UTF-8 (byte 7)"),
    (b'{"a": "\xed\xa0\x80"}', None, "not valid UTF-8 (byte 7)"),  # a surrogate, UTF-8 encoded
    (b'{"a": "\xc0\x80"}', None, "not valid UTF-8 (byte 7)"),  # overlong NUL
    (b'{"a": NaN}', None, "non-finite number NaN is not valid JSON"),
    (b'{"a": [Infinity]}', None, "non-finite number Infinity is not valid JSON"),
    (b'{"a": -Infinity}', None, "non-finite number -Infinity is not valid JSON"),
    (b'{"a": 123456789012345678901234567890}', {"a": 123456789012345678901234567890}, None),
    (b'{"a": [18446744073709551616, 0.5]}', {"a": [18446744073709551616, 0.5]}, None),
    (b'{"a": -9223372036854775809}', {"a": -9223372036854775809}, None),
    (b'{"a": 18446744073709551615}', {"a": 18446744073709551615}, None),
    # The stdlib reads these as inf/-inf (a NaN/Infinity literal by another spelling): refused.
    (b'{"a": 1e400, "b": -1e400}', None, "number 1e400 is too large for a float (it would read as inf)"),
    (b'{"b": [1.5, -1e400]}', None, "number -1e400 is too large for a float (it would read as -inf)"),
    (b'{"a": 1.7976931348623157e308}', {"a": 1.7976931348623157e308}, None),  # the largest float is fine
    (b'{"a": 1e-400, "b": -0.0, "c": -0, "d": 1E2}', {"a": 0.0, "b": -0.0, "c": 0, "d": 100.0}, None),
    (b'{"a": 12345678901234567890.5}', {"a": 12345678901234567890.5}, None),
    (b'{"a": 1, "b": 2, "a": 3}', {"a": 3, "b": 2}, None),  # the last value, at the first position
    (b'\xef\xbb\xbf{"a": 1}', None, "malformed JSON: Expecting value at column 1"),
    (b'{"a": 1} x', None, "malformed JSON: Extra data at column 10"),
    (b'{"a": 1}\x00', None, "malformed JSON: Extra data at column 9"),
    (b' {"a": 1} \r\n', {"a": 1}, None),
    (b"", None, "malformed JSON: Expecting value at column 1"),
    (b"\n", None, "malformed JSON: Expecting value at column 1"),
    (b"[1]", None, "expected a JSON object, got list"),
    (b'"s"', None, "expected a JSON object, got str"),
    (b"123456789012345678901234567890", None, "expected a JSON object, got int"),
    (b"1.5", None, "expected a JSON object, got float"),
    (b"null", None, "expected a JSON object, got NoneType"),
    (b'{"a": "\\u0000"}', {"a": "\x00"}, None),
    (b'{"a": "\t"}', None, "malformed JSON: Invalid control character at at column 8"),
    (b'{"a": 01}', None, "malformed JSON: Expecting ',' delimiter at column 8"),
    (b'{"a": 1,}', None, "malformed JSON: Expecting property name enclosed in double quotes at column 9"),
    (b'{"a": 1}' + b"\xc2\xa0", None, "malformed JSON: Extra data at column 9"),
    (b'{"a": ' + b"[" * 150 + b"]" * 150 + b"}", {"a": json.loads(b"[" * 150 + b"]" * 150)}, None),
    (b'{"a": ' + b"[" * 1010 + b"]" * 1010 + b"}", None, DEEP),  # orjson would take 1024 levels
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, DEEP),
]


def same(got, expected):
    # repr tells 1 from 1.0, -0.0 from 0.0 and one key order from another; == does not.
    return got[1] == expected[1] and repr(got[0]) == repr(expected[0])


@pytest.mark.parametrize(("line", "value", "reason"), TABLE, ids=range(len(TABLE)))
def test_nasty_lines_decode_or_are_refused_as_by_the_stdlib(line, value, reason):
    got = decode_json_object(line)
    assert same(got, (value, reason)), got
    assert same(got, jsonline._decode_stdlib(line))


def test_plain_records_take_the_fast_path(monkeypatch):
    def fail(line):
        raise AssertionError(f"stdlib path taken for {line!r}")

    monkeypatch.setattr(jsonline, "_decode_stdlib", fail)
    for record in ({"id": "r1", "text": "x" * 5_000}, {"m": [{"role": "user", "content": "hi"}], "n": 7},
                   {"score": 0.25, "id": 123456789012345678}):  # a float, and an 18-digit int
        assert decode_json_object(json.dumps(record).encode()) == (record, None)


def test_mutated_lines_give_the_stdlib_verdict_and_value():
    """Random byte edits of real-looking records: every outcome equals the stdlib path's."""
    rng = random.Random(7)
    seeds = [json.dumps({"id": "a-1", "text": "héllo \\ wörld\n\ttab", "n": [1, 2.5, -3e10, None, True],
                         "meta": {"k": "\U0001F600", "big": 12345678901234567890123, "z": {}}},
                        ensure_ascii=ensure_ascii).encode() for ensure_ascii in (True, False)]
    alphabet = b'{}[]",:0123456789.eE+-\\u" \n\tabcdfnrtNaIy\x00\xff\xc3\xa9\xed\xa0\x80'
    checked = 0
    for _ in range(20_000):
        line = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line) + 1)
            action = rng.random()
            if action < 0.4:
                line[at:at] = bytes([rng.choice(alphabet)])
            elif action < 0.7:
                del line[at:at + rng.randint(1, 3)]
            else:
                line[at:at + 1] = bytes([rng.choice(alphabet)])
        got, expected = decode_json_object(bytes(line)), jsonline._decode_stdlib(bytes(line))
        assert same(got, expected), (bytes(line), got, expected)
        checked += expected[1] is None
    assert checked > 1_000  # plenty of the edits still decode: the values were compared, not only errors


def test_a_float_overflowing_to_infinity_is_quarantined_at_ingest(tmp_path):
    """`1e400` reached the selection as a bare Infinity (the stdlib reads it as inf); it is quarantined."""
    from mira.api import run_one
    from mira.core.config import RunConfig

    source = tmp_path / "s.jsonl"
    source.write_text('{"id": "ok", "text": "a fine record with enough text"}\n'
                      '{"id": "big", "text": "another record with enough text", "score": 1e400}\n')
    config = RunConfig.model_validate({"name": "t", "run_dir": str(tmp_path / "run"),
                                       "sources": [{"name": "s", "path": str(source), "format": "text"}],
                                       "ingest": {"min_chars": 1}})
    run_one("ingest", config)
    lines = (tmp_path / "run" / "quarantine" / "s.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "too large for a float" in json.loads(lines[0])["reason"]
