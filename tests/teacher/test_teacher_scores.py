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
