import numpy as np
import pytest

from mira.core.config import EmbedConfig
from mira.students.features import STRUCTURAL_NAMES, Featurizer, StaticEmbedder, clip_text
from tests.students.student_data import stdlib_texts


@pytest.fixture(scope="module")
def featurizer():
    return Featurizer(EmbedConfig())


def test_fast_embedding_equals_model2vec_mean_of_tokens():
    from mira.text.embed import static_model

    texts = stdlib_texts(40, 1_200) + ["Héllo WORLD — naïve café, 東京 foo_bar(x)=1; CamelCaseName.attr[0]",
                                       "UPPER lower MiXeD 12345 3.14 a+b!=c", "x"]
    model = static_model(EmbedConfig())
    reference = np.asarray(model.encode(texts, max_length=None), dtype=np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    embedder = StaticEmbedder(EmbedConfig())
    first = embedder.embed(texts, max_chars=10_000)
    again = embedder.embed(texts, max_chars=10_000)  # from the chunk cache this time
    assert np.allclose(first, again, atol=1e-6)
    cosine = (first * reference).sum(axis=1)
    assert cosine.min() > 0.9999, cosine.min()


def test_static_table_reads_what_model2vec_loads():
    # The students read the static model's folder without model2vec (its import is half a second of
    # every scoring worker's start): the vectors, unknown token and token ids must be model2vec's.
    from mira.text.embed import static_model, static_table

    model, table = static_model(EmbedConfig()), static_table(EmbedConfig())
    assert table.embedding.dtype == np.float32
    assert np.array_equal(table.embedding, np.asarray(model.embedding, dtype=np.float32))
    assert table.unk_token_id == model.unk_token_id is not None
    chunks = ["def", "foo_bar", "Héllo", "東京", "naïve", "zzqxj", "[PAD]", "x" * 300]
    ours = [e.ids for e in table.tokenizer.encode_batch(chunks, add_special_tokens=False)]
    theirs = [e.ids for e in model.tokenizer.encode_batch(chunks, add_special_tokens=False)]
    assert ours == theirs


def test_empty_and_whitespace_texts_do_not_break_a_batch(featurizer):
    X = featurizer(["", "   \n\n", "def f():\n    return 1\n"], ["code", None, "code"])
    assert X.shape == (3, len(featurizer.names)) and np.isfinite(X).all()


def test_structural_features_read_comments_indentation_and_tool_calls(featurizer):
    code = "# comment\n# another\ndef f(x):\n    return x\n"
    prose = "This is a plain paragraph of prose.\nIt has two lines.\n"
    good = ("[user]\nweather in Paris?\n\n[assistant]\n-> tool call: get_weather({\"city\": \"Paris\"})\n\n"
            "[tool get_weather]\n{\"temp\": 21}\n\n[assistant]\nIt is 21 degrees.")
    bad = ("[user]\nweather in Paris?\n\n[assistant]\n"
           "-> tool call: get_weather({\"city\": \"Paris\"}{\"unit\": \"C\"})\n\n"
           "[tool get_weather]\nerror: invalid arguments\n\n[assistant]\n"
           "-> tool call: get_weather({\"city\": \"Paris\"}{\"unit\": \"C\"})\n\n"
           "[tool get_weather]\nerror: invalid arguments\n\n[assistant]\nIt is 30 degrees.")
    X = featurizer([code, prose, good, bad], ["code", "text", "agent", "agent"])
    f = {name: X[:, X.shape[1] - len(STRUCTURAL_NAMES) + i] for i, name in enumerate(STRUCTURAL_NAMES)}
    assert f["comment_line_share"][0] > 0.3 and f["comment_line_share"][1] == 0
    assert f["indented_line_share"][0] > 0 and f["indented_line_share"][1] == 0
    assert f["tool_args_valid_share"][2] == 1.0 and f["tool_args_valid_share"][3] == 0.0
    assert f["tool_calls_repeated_share"][2] == 0.0 and f["tool_calls_repeated_share"][3] == 0.5
    assert f["tool_error_share"][3] == 1.0 and f["tool_error_share"][2] == 0.0
    assert f["format_code"][0] == 1 and f["format_agent"][3] == 1 and f["format_text"][0] == 0


def test_clip_text_keeps_start_and_end():
    text = "A" * 3_000 + "END"
    clipped = clip_text(text, 1_000)
    assert len(clipped) <= 1_001 and clipped.startswith("AAA") and clipped.endswith("END")
    assert clip_text("short", 1_000) == "short"


def test_a_documents_features_do_not_depend_on_its_neighbours_in_the_batch(featurizer):
    # The byte after a document's last newline belongs to the next document of the batch: a blank or
    # indented start there must not count as a blank or indented line of this one.
    doc = "line one\nline two"
    neighbours = ["\n\nblank start", "    indented start", "plain", ""]
    alone = featurizer([doc], ["text"])[0]
    for neighbour in neighbours:
        X = featurizer([doc, neighbour], ["text", "text"])
        assert np.array_equal(X[0], alone), neighbour
        assert np.array_equal(X[1], featurizer([neighbour], ["text"])[0]), neighbour
    f = dict(zip(STRUCTURAL_NAMES, alone[len(alone) - len(STRUCTURAL_NAMES):], strict=True))
    assert f["blank_line_share"] == 0 and f["indented_line_share"] == 0
