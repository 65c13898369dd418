"""An eval set that overlaps the corpus is caught: flagged with counts, refused above 10% (issue 26 item 5)."""

import shutil

import pytest

from mira import api
from mira.core.config import CompareConfig, ConfigError
from mira.evaluation.overlap import TextIndex, signature
from mira.run.rundir import RunDir
from tests.compare.test_compare_proxy import StandIn
from tests.engines.doubles import STDLIB, STDLIB_FILES, build_scored_run, make_config

# Stdlib modules the test corpus did not take (it took STDLIB_FILES[:24]).
FRESH = ["argparse.py", "ast.py", "calendar.py", "configparser.py", "contextlib.py", "datetime.py", "decimal.py",
         "ftplib.py", "gettext.py", "gzip.py", "imaplib.py", "inspect.py", "ipaddress.py", "locale.py",
         "logging/__init__.py", "mailbox.py", "netrc.py", "optparse.py", "pathlib.py", "pickle.py"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    return build_scored_run(tmp_path_factory.mktemp("scored"))


def _eval_dir(tmp_path, exact=(), normalised=(), near=(), fresh=20):
    """A folder of .py files: corpus files copied as they are, re-indented, or with their end
    rewritten, and stdlib modules the corpus does not hold."""
    folder = tmp_path / "eval"
    folder.mkdir()
    for name in exact:
        shutil.copyfile(STDLIB / name, folder / name)
    for name in normalised:
        text = (STDLIB / name).read_text()
        (folder / name).write_text(text.replace("    ", "\t").replace("\n\n", "\n \n"))
    for name in near:
        lines = (STDLIB / name).read_text().splitlines()
        (folder / name).write_text("\n".join(lines[:-6] + ["# rewritten ending", "pass"]) + "\n")
    fresh_names = [n for n in FRESH if n not in STDLIB_FILES[:24]][:fresh]
    for name in fresh_names:
        shutil.copyfile(STDLIB / name, folder / name.replace("/", "_"))
    return folder


def _config(scored, tmp_path, folder):
    corpus, template = scored
    shutil.copytree(template, tmp_path / "run")
    compare = CompareConfig.model_validate({
        "methods": [{"method": "mira", "mode": "group"}, {"method": "random", "mode": "source"}],
        "eval_sets": [{"name": "heldout", "path": str(folder), "include": "*.py", "format": "code"}],
        "proxy": {"enabled": True, "seeds": 2, "train_bytes": 4096, "eval_bytes": 10_000_000}})
    return make_config(corpus, tmp_path / "run", compare=compare)


def test_an_overlapping_eval_set_is_refused_before_any_selection(scored, tmp_path):
    folder = _eval_dir(tmp_path, exact=["abc.py", "bisect.py"], normalised=["difflib.py", "enum.py"],
                       near=["functools.py", "csv.py"], fresh=14)
    config = _config(scored, tmp_path, folder)
    with pytest.raises(ConfigError) as caught:
        api.compare(config, proxy_api=StandIn().api)
    message = str(caught.value)
    assert message.count("\n") == 0 and "'heldout': 6 of its 20 records (30%) duplicate corpus records" in message
    assert "2 exact, 2 normalised, 2 near" in message and "held out" in message
    assert not (tmp_path / "run" / "selection").exists()


def test_a_small_overlap_is_flagged_with_counts_and_reused(scored, tmp_path, caplog):
    folder = _eval_dir(tmp_path, near=["dataclasses.py"], fresh=19)
    config = _config(scored, tmp_path, folder)
    stand_in = StandIn()
    result = api.compare(config, proxy_api=stand_in.api)
    entry = result["eval_overlap"]["sets"]["heldout"]
    assert (entry["records"], entry["exact"], entry["normalised"], entry["near"]) == (20, 0, 0, 1)
    assert entry["share"] == 0.05 and entry["examples"][0]["kind"] == "near"
    assert entry["examples"][0]["corpus"].startswith("pycode/") and "dataclasses.py" in entry["examples"][0]["corpus"]
    assert "1 of 20 records duplicate corpus records" in caplog.text
    from mira.evaluation.tables import summary_lines

    assert ("  note: eval set heldout: 1 of 20 records duplicate corpus records (1 near); its verdicts favour "
            "selections that kept them", "yellow") in summary_lines(result)
    # The next compare over the same corpus and eval texts reuses the counts (no corpus pass).
    import mira.evaluation.compare as compare_module

    def no_pass(*args):
        raise AssertionError("the corpus was read again")

    original = compare_module.eval_overlap
    compare_module.eval_overlap = no_pass
    try:
        again = api.compare(config, proxy_api=stand_in.api)
    finally:
        compare_module.eval_overlap = original
    assert again["eval_overlap"] == result["eval_overlap"]
    page = RunDir(tmp_path / "run").path("report", "index.html").read_text()
    assert "duplicate corpus records" in page


def test_near_duplicates_are_found_and_unrelated_texts_are_not():
    base = (STDLIB / "difflib.py").read_text()
    index = TextIndex()
    index.add("difflib", base)
    index.add("short", "just a few words")
    lines = base.splitlines()
    assert index.matches(base) == {"difflib": "exact"}
    assert index.matches(base.upper()) == {"difflib": "normalised"}
    assert index.matches("\n".join(lines[: len(lines) * 9 // 10])) == {"difflib": "near"}  # 90% of it
    assert index.matches("\n".join(lines[: len(lines) // 2])) == {}  # half of it: Jaccard ~0.5
    assert index.matches((STDLIB / "heapq.py").read_text()) == {}
    assert index.matches("Just  a few\twords") == {"short": "normalised"}
    assert (signature(base) == signature(base)).all()
