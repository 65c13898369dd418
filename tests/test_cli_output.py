"""Normal CLI output carries no third-party noise (progress bars, library warnings); -v shows it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# A stand-in command that makes the noise the libraries make: a tqdm bar (model2vec's distillation),
# a FutureWarning and a UserWarning (sentence-transformers, matplotlib), and a Python child process
# (the engine's spawned workers) that warns too. tqdm is imported inside the command, after the CLI
# has run, as the libraries import it.
NOISY = """
import subprocess, sys, warnings
import click
from mira import cli

@cli.main.command(name="noisy")
def noisy():
    from tqdm import tqdm
    for _ in tqdm(range(3), desc="Encoding tokens"):
        pass
    warnings.warn("a library renamed a method", FutureWarning)
    warnings.warn("a plot had nothing to label", UserWarning)
    subprocess.run([sys.executable, "-c", "import warnings; warnings.warn('worker note', FutureWarning)"], check=True)
    click.echo("done")

cli.main(sys.argv[1:], prog_name="mira")
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", NOISY, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=True)


def test_normal_output_has_no_third_party_noise():
    result = _run("noisy")
    assert result.stdout.strip() == "done"
    assert "Warning" not in result.stderr and "worker note" not in result.stderr
    assert "Encoding tokens" not in result.stderr and "it/s" not in result.stderr
    assert result.stderr == ""


def test_verbose_shows_it():
    result = _run("-v", "noisy")
    assert "FutureWarning: a library renamed a method" in result.stderr
    assert "UserWarning: a plot had nothing to label" in result.stderr
    assert "FutureWarning: worker note" in result.stderr
    assert "Encoding tokens" in result.stderr


def test_length_plot_of_a_group_with_nothing_scored_does_not_warn():
    from mira.report import plots

    empty = np.array([], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svg = plots.length_scatter([("masked group", 0, [("fortunes", empty, empty)], float("nan"))], {})
    assert "<svg" in svg


def test_embedding_nothing_uses_no_deprecated_api():
    from mira.core.config import EmbedConfig
    from mira.text.embed import embed_texts, sentence_model

    config = EmbedConfig()
    sentence_model(config.model, config.max_seq_tokens)  # loading may warn on its own; not our call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = embed_texts([], config)
    assert out.shape == (0, embed_texts(["one text"], config).shape[1]) and out.dtype == np.float32


def test_in_process_cli_leaves_the_callers_settings_alone(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mira.cli import main

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    before = list(warnings.filters)
    result = CliRunner().invoke(main, ["status", str(tmp_path / "no-run")])
    assert result.exit_code != 0 and "no run directory" in result.output
    assert "TQDM_DISABLE" not in os.environ and "PYTHONWARNINGS" not in os.environ
    assert warnings.filters == before
