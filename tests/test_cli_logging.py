"""The CLI says each warning once, as a plain line (issue 27 item 18); --verbose keeps every record."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from mira.core.logs import OncePerProcess, PlainFormatter

ROOT = Path(__file__).resolve().parents[1]

# A stand-in command that meets one condition six times, as `mira compare` met "every anchor masked"
# once per selection it built, and another condition once.
REPEATS = """
import logging, sys
import click
from mira import cli

@cli.main.command(name="repeats")
def repeats():
    log = logging.getLogger("mira.selection.build")
    for _ in range(6):
        log.warning("%d of %d records have every anchor masked", 3127, 3130)
    log.warning("another condition")
    log.info("detail for --verbose")
    click.echo("done")

cli.main(sys.argv[1:], prog_name="mira")
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", REPEATS, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=True)


def test_a_condition_met_six_times_is_one_plain_line():
    result = _run("repeats")
    assert result.stdout == "done\n"
    assert result.stderr.splitlines() == ["warning: 3127 of 3130 records have every anchor masked",
                                          "warning: another condition"]


def test_verbose_keeps_every_record_with_its_time():
    lines = _run("-v", "repeats").stderr.splitlines()
    masked = [line for line in lines if "every anchor masked" in line]
    assert len(masked) == 6 and all(" mira.selection.build WARNING " in line for line in masked)
    assert any("detail for --verbose" in line for line in lines)


def test_the_filter_passes_other_texts_and_lower_levels():
    once = OncePerProcess()

    def record(level: int, msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("mira.x", level, __file__, 1, msg, args, None)

    assert once.filter(record(logging.WARNING, "%d masked", 3))
    assert not once.filter(record(logging.WARNING, "%d masked", 3))
    assert once.filter(record(logging.WARNING, "%d masked", 4))  # another count: another condition
    assert once.filter(record(logging.ERROR, "%d masked", 3))
    assert once.filter(record(logging.INFO, "progress")) and once.filter(record(logging.INFO, "progress"))
    assert PlainFormatter().format(record(logging.WARNING, "%d masked", 3)) == "warning: 3 masked"
