import subprocess
import sys

import pytest

from mira.core.config import ConfigError, RunConfig
from mira.run.config_file import load_config
from mira.selection.rankings import METHODS, check_method, get_method, method_names, retention_mode


def test_unknown_and_renamed_methods_are_one_line_errors():
    with pytest.raises(ConfigError, match="use `method: mira` with `mode: global`"):
        load_config(None, ["selection.method=global_rubric"])
    with pytest.raises(ConfigError) as error:
        load_config(None, ["selection.method=ppl"])
    assert "valid methods: dataman, dsir, length, mira, perplexity, random" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="valid methods: dataman, dsir"):
        get_method("nope")


def test_every_registered_method_ranks_and_the_paper_modes_hold():
    assert method_names() == sorted(METHODS) == ["dataman", "dsir", "length", "mira", "perplexity", "random"]
    for name in METHODS:
        assert callable(get_method(check_method(name)).rank)
    modes = {m: retention_mode(RunConfig(selection={"method": m, "mode": "group", "dsir_target": "t.jsonl"}))
             for m in METHODS}
    # Only random fixes its mode: every other method ranks in whichever mode is asked for.
    assert modes == {"mira": "group", "random": "source", "length": "group", "dsir": "group",
                     "perplexity": "group", "dataman": "group"}
    assert retention_mode(RunConfig(selection={"method": "mira", "mode": "global"})) == "global"  # MIRA-Global


def test_rankings_import_without_select_or_heavy_libraries():
    # The registry sits below selection building and the stages, and nothing heavy loads at import time.
    code = ("import sys, mira.selection.rankings; "
            "bad = [m for m in ('mira.selection.build', 'mira.stages.select', 'pyarrow', 'torch', 'sklearn') "
            "if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    build = "import mira.selection.build as s; assert s.ScoreTable and s.load_score_table"
    subprocess.run([sys.executable, "-c", build], check=True)
