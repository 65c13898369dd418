import math

import pytest

from mira.teacher.scores import expected_scores, score_offsets
from mira.teacher.testing import Reply, synthetic_logprobs


def test_score_offsets_ignore_quoted_scores_and_floats():
    text = '{"reason": "they said \\"score\\": 5", "score": 7, "items": [{"score": 10}, {"score": 3.5}]}'
    assert [v for _, v in score_offsets(text)] == [7, 10, -1]


@pytest.mark.parametrize("split_digits", [False, True])
def test_expected_scores_from_synthetic_logprobs(split_digits):
    content = '{"anchors": [{"name": "a", "score": 7}, {"name": "b", "score": 10}, {"name": "c", "score": 1}]}'
    probs = [{7: 0.5, 8: 0.3, 6: 0.2}, {10: 0.75, 9: 0.25}, {1: 0.6, 10: 0.1, 2: 0.3}]
    logprobs = synthetic_logprobs(Reply(content, score_probs=probs, split_digits=split_digits))
    got = expected_scores(content, logprobs)
    want = [sum(v * p for v, p in d.items()) / sum(d.values()) for d in probs]
    assert got == pytest.approx(want, abs=1e-6)


def test_expected_scores_renormalise_over_score_tokens_only():
    tokens = [{"token": '{"score": ', "logprob": 0.0},
              {"token": "4", "logprob": math.log(0.4),
               "top_logprobs": [{"token": "4", "logprob": math.log(0.4)}, {"token": "6", "logprob": math.log(0.2)},
                                {"token": "x", "logprob": math.log(0.3)}, {"token": "12", "logprob": math.log(0.1)}]},
              {"token": "}", "logprob": 0.0}]
    assert expected_scores('{"score": 4}', {"content": tokens}) == pytest.approx([(4 * 0.4 + 6 * 0.2) / 0.6])


def test_expected_scores_handle_fenced_token_stream_and_missing_logprobs():
    content = '{"score": 3}'
    stream = synthetic_logprobs(Reply("```json\n" + content + "\n```", score_probs=[{3: 0.5, 5: 0.5}]))
    assert expected_scores(content, stream) == pytest.approx([4.0])
    assert expected_scores(content, None) == [None]
    assert expected_scores('{"reason": "no scores"}', None) is None
    mismatched = synthetic_logprobs(Reply('{"score": 9}'))
    assert expected_scores(content, mismatched) == [None]


def _expected(content, probs, split_digits):
    return expected_scores(content, synthetic_logprobs(Reply(content, score_probs=probs, split_digits=split_digits)))


def test_unsampled_one_of_a_digit_split_ten_is_not_read_as_one():
    # The reviewer's case: sampled 7, p(7)=0.55, p("1"->"0")=0.45. The old rule gave 4.30; the
    # next position follows "7", so the 1-vs-10 split is unknowable: fall back (None), never 4.30.
    content = '{"score": 7}'
    assert _expected(content, [{7: 0.55, 10: 0.45}], split_digits=True) == [None]
    # The same distribution with whole-number tokens ("10" is one token) is exact.
    assert _expected(content, [{7: 0.55, 10: 0.45}], split_digits=False) == pytest.approx([8.35])


def test_small_unknown_one_mass_uses_the_midpoint_of_the_bounds():
    from mira.teacher.scores import AMBIGUITY_TOLERANCE

    got = _expected('{"score": 7}', [{7: 0.97, 10: 0.03}], split_digits=True)[0]
    exact = 7 * 0.97 + 10 * 0.03
    assert got is not None and abs(got - exact) <= AMBIGUITY_TOLERANCE / 2
    assert got == pytest.approx(7 * 0.97 + 5.5 * 0.03)  # the midpoint of [read as 1, read as 10]


@pytest.mark.parametrize("split_digits", [False, True])
def test_sampled_one_resolves_exactly_from_the_next_position(split_digits):
    # Sampled "1" (score 1, or score 10): the next position's alternatives split the "1" mass.
    got = _expected('{"a": {"score": 1}, "b": {"score": 10}}', [{1: 0.5, 10: 0.3, 4: 0.2}, {10: 0.6, 1: 0.1, 8: 0.3}],
                    split_digits)
    assert got == pytest.approx([(0.5 + 3 + 0.8) / 1.0, (6 + 0.1 + 2.4) / 1.0])


def test_teacher_result_from_a_digit_split_server(tmp_path):
    """End to end through the scripted server: the digit-split answer does not bias the target."""
    from pydantic import BaseModel

    from mira.run.rundir import RunDir
    from mira.teacher import TeacherRequest, open_teacher
    from mira.teacher.request import Score
    from mira.teacher.testing import ScriptedServer, script

    class Answer(BaseModel):
        score: Score

    replies = [Reply('{"score": 7}', score_probs=[{7: 0.55, 10: 0.45}], split_digits=True),
               Reply('{"score": 10}', score_probs=[{10: 0.55, 7: 0.45}], split_digits=True)]
    with ScriptedServer(script(*replies)) as server:
        with open_teacher(server.teacher_config(concurrency=1), RunDir(tmp_path), stage="t") as teacher:
            first = teacher.run([TeacherRequest([{"role": "user", "content": "a"}], schema=Answer)])
            second = teacher.run([TeacherRequest([{"role": "user", "content": "b"}], schema=Answer)])
    assert first[0].expected_scores == [None]
    assert second[0].expected_scores == pytest.approx([8.65])
