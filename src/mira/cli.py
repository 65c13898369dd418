"""`mira` command line: a thin layer over :mod:`mira.api`.

Errors a user can cause print one line and exit non-zero; a traceback only with --verbose.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mira.core.logs import cli_handler
from mira.core.stages import STAGE_HELP

EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3      # stopped early on purpose (teacher budget, missing input); rerun resumes
EXIT_TEACHER_FAILED = 4  # the teacher failed too often or its deadline passed; rerun after fixing it
# Another mira writes to the same run directory (sysexits' EX_TEMPFAIL: try again later).
EXIT_LOCKED = 75
def _fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _guard(fn: Callable[[], Any], verbose: bool) -> Any:
    """Turn the errors a user can cause into one line; keep tracebacks for --verbose."""
    from mira.core.config import ConfigError
    from mira.core.errors import StageIncomplete, StageNotReady, TeacherFailed
    from mira.run.lock import RunLocked

    try:
        with _terminate_as_interrupt():
            return fn()
    except (ConfigError, StageNotReady) as exc:
        _fail(str(exc))
    except RunLocked as exc:
        _fail(str(exc), EXIT_LOCKED)
    except TeacherFailed as exc:
        _fail(f"teacher failed: {exc}", EXIT_TEACHER_FAILED)
    except StageIncomplete as exc:
        _fail(f"stopped early: {exc}", EXIT_INCOMPLETE)
    except OSError as exc:
        message = _environment_error(exc)
        if message is not None:
            _fail(message)
        elif verbose:
            raise
        else:
            _fail(f"{type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", 1)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None) or getattr(exc.__cause__, "signum", None) or signal.SIGINT
        _fail(str(exc) or "interrupted; finished work is kept, rerun the same command to resume", 128 + int(signum))
    except Exception as exc:  # noqa: BLE001 - last line of defence for the CLI only
        if verbose:
            raise
        _fail(f"{type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", 1)


# File-system refusals a user fixes (permissions, a read-only mount, a full disk, a long name), with what to do.
_ENVIRONMENT_ERRORS = {
    errno.EACCES: "check the permissions there (a read-only run directory or selection folder?)",
    errno.EPERM: "check the permissions there (a read-only run directory or selection folder?)",
    errno.EROFS: "the file system is read-only; choose another run_dir",
    errno.ENOSPC: "free some space, then rerun the same command",
    errno.EDQUOT: "free some space (disk quota), then rerun the same command",
    errno.ENAMETOOLONG: "the name is too long for the file system; choose a shorter run_dir or selection.name",
}


def _environment_error(exc: OSError) -> str | None:
    """One line for an OSError the user can fix (exit 2), None for any other."""
    advice = _ENVIRONMENT_ERRORS.get(exc.errno or 0)
    if advice is None:
        return None
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; {advice}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so the same cleanup (usage flushed, no marker) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


class _terminate_as_interrupt:  # noqa: N801 - used as a context manager
    """While a command runs, SIGTERM unwinds like Ctrl-C instead of killing the process silently."""

    def __enter__(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            raise Terminated(signum)

        try:
            self.previous = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread (e.g. click's test runner in a thread)
            self.previous = None

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _progress_factory() -> tuple[Any, Callable[..., Any]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), transient=False)

    class Task:
        def __init__(self, description: str, total: int | None) -> None:
            self.id = progress.add_task(description, total=total)

        def advance(self, n: int = 1) -> None:
            progress.advance(self.id, n)

        def set_total(self, total: int | None) -> None:
            progress.update(self.id, total=total)

        def close(self) -> None:
            progress.stop_task(self.id)

    return progress, Task


def _load(config_path: str | None, overrides: tuple[str, ...]) -> Any:
    from mira.run.config_file import load_config

    return load_config(config_path, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mira")
@click.option("-v", "--verbose", is_flag=True, help="Log details and show tracebacks.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """mira: select the best part of a heterogeneous LLM training mixture (MIRA)."""
    if not logging.getLogger().handlers:  # as basicConfig: a host's own logging (a notebook, pytest) stays
        logging.getLogger().addHandler(cli_handler(verbose))
        logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        ctx.call_on_close(_quiet_third_party())
    ctx.obj = {"verbose": verbose}


# Categories that libraries use for notes to their own users (API renames, plotting edge cases),
# not to ours. mira itself reports through logging, never through `warnings`.
_QUIET_CATEGORIES = (UserWarning, FutureWarning, DeprecationWarning)


def _quiet_third_party() -> Callable[[], None]:
    """Keep other libraries' progress bars and warnings out of normal output; --verbose shows them.

    Set here rather than in library code so that the Python API leaves the caller's settings alone.
    The environment carries the same settings to spawned workers, which do not inherit warnings
    filters, and tqdm reads TQDM_DISABLE when it is first imported (model2vec's distillation bar).
    A user's own TQDM_DISABLE, PYTHONWARNINGS or ``python -W`` win. Returns the undo, for callers
    that run the CLI inside a longer-lived process (tests).
    """
    saved = {name: os.environ.get(name) for name in ("TQDM_DISABLE", "PYTHONWARNINGS")}
    filters = warnings.catch_warnings()
    filters.__enter__()
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not sys.warnoptions:  # otherwise PYTHONWARNINGS or -W: the user chose
        os.environ["PYTHONWARNINGS"] = ",".join(f"ignore::{c.__name__}" for c in _QUIET_CATEGORIES)
        for category in _QUIET_CATEGORIES:
            warnings.filterwarnings("ignore", category=category)

    def undo() -> None:
        filters.__exit__(None, None, None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    return undo


def _stage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a config value, e.g. --set selection.budget_fraction=0.3")(fn)
    fn = click.option("--force", is_flag=True, help="Redo the stage even if it is done.")(fn)
    fn = click.option("--wait", is_flag=True,
                      help="If another mira is writing to the run directory, wait for it instead of exiting.")(fn)
    fn = click.option("--dry-run", is_flag=True, help="Print the resolved config and the plan; run nothing.")(fn)
    return click.argument("config", type=click.Path(dir_okay=False))(fn)


def _print_outcome(outcome: Any) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in outcome.counts.items() if not isinstance(v, (dict, list)))
    verb = "skipped (done)" if outcome.skipped else f"done in {outcome.seconds:.1f}s"
    click.echo(f"{outcome.stage}: {verb}" + (f" [{counts}]" if counts else ""))
    for note in outcome.notes:
        click.secho(f"  note: {note}", fg="yellow")


def _print_selection(run_dir: Path) -> None:
    """The current selection's folder, and what share of its tokens was ranked and what was random."""
    from mira.run.rundir import RunDir
    from mira.selection.named import current_selection, read_summary
    from mira.selection.notes import random_share_notes, ranking_lines

    selection = current_selection(RunDir(run_dir))
    summary = read_summary(selection) if selection is not None else None
    if summary is not None:
        click.echo(f"selection: {selection}")
        click.secho("".join(f"  {line}\n" for line in ranking_lines(summary)), nl=False,
                    fg="yellow" if random_share_notes(summary) else None)  # mostly random: in colour


def _make_stage_command(stage: str) -> None:
    @main.command(name=stage, help=STAGE_HELP[stage])
    @_stage_options
    @click.pass_context
    def command(ctx: click.Context, config: str, dry_run: bool, force: bool, wait: bool,
                overrides: tuple[str, ...]) -> None:
        verbose = ctx.obj["verbose"]
        cfg = _guard(lambda: _load(config, overrides), verbose)
        if dry_run:
            _dry_run(cfg, [stage], verbose, force)
            return
        from mira import api

        progress, task = _progress_factory()
        with progress:
            outcome = _guard(lambda: api.run_one(stage, cfg, force, task, wait=wait), verbose)
        _print_outcome(outcome)
        if stage == "select":
            _print_selection(cfg.resolved_run_dir())


for _stage in STAGE_HELP:
    _make_stage_command(_stage)


def _dry_run(cfg: Any, stages: list[str], verbose: bool, force: bool = False) -> None:
    from mira.pipeline.plan import plan
    from mira.run.config_file import dump_config

    click.echo(f"# resolved config (fingerprint {cfg.fingerprint()})")
    click.echo(dump_config(cfg))
    click.echo("# plan")
    for line in _guard(lambda: plan(cfg, stages, force), verbose):
        click.echo(line)


@main.command(name="run")
@_stage_options
@click.option("--until", type=click.Choice(list(STAGE_HELP)), help="Stop after this stage.")
@click.pass_context
def run_command(ctx: click.Context, config: str, dry_run: bool, force: bool, wait: bool,
                overrides: tuple[str, ...], until: str | None) -> None:
    """Run the whole pipeline; finished stages are skipped."""
    verbose = ctx.obj["verbose"]
    cfg = _guard(lambda: _load(config, overrides), verbose)
    from mira.core.stages import STAGES

    stages = list(STAGES[: STAGES.index(until) + 1]) if until else list(STAGES)
    if dry_run:
        _dry_run(cfg, stages, verbose, force)
        return
    from mira import api

    progress, task = _progress_factory()
    with progress:
        def on_stage(o: Any) -> None:
            progress.console.print(f"[bold]{o.stage}[/]: " + ("skipped (done)" if o.skipped else
                                                               f"done in {o.seconds:.1f}s"))
            for note in o.notes:  # (markup=False: a note may hold brackets)
                progress.console.print(f"  note: {note}", style="yellow", markup=False)

        _guard(lambda: api.run_pipeline(cfg, force, until, task, on_stage=on_stage, wait=wait), verbose)
    run_dir = cfg.resolved_run_dir()
    click.echo(f"run directory: {run_dir}")
    if (run_dir / "report" / "index.html").exists():
        click.echo(f"report: {run_dir / 'report' / 'index.html'}")
    _print_selection(run_dir)


@main.command()
@click.argument("target", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def status(ctx: click.Context, target: str, as_json: bool) -> None:
    """Show which stages of a run are done (TARGET: a run directory or a config file)."""
    from mira import api

    path, cfg = Path(target), None
    if path.is_file():
        cfg = _guard(lambda: _load(target, ()), ctx.obj["verbose"])
        path = cfg.resolved_run_dir()
    info = _guard(lambda: api.status(path, cfg), ctx.obj["verbose"])
    if not info["exists"]:
        _fail(f"no run directory at {path}")
    if not info["is_run"]:
        _fail(f"{path} is not a mira run directory; give a run directory or a config file")
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"run: {info['run_dir']}")
    for stage, marker in info["stages"].items():
        if marker.get("fingerprint"):
            counts = ", ".join(f"{k}={v}" for k, v in marker.get("counts", {}).items()
                               if not isinstance(v, (dict, list)))
            box = {"stale": "[~]", "may be stale": "[?]"}.get(marker["state"], "[x]")
            click.echo(f"  {box} {stage:<9} {marker.get('finished_at', '')}  {counts}")
            if marker["state"] in ("stale", "may be stale"):  # the dry run would rerun it: say why
                click.echo(f"        {marker['state']}: {'; '.join(marker['reasons'])}")
        else:
            click.echo(f"  [ ] {stage}")
    if info.get("states_unknown"):
        click.echo(f"  ({info['states_unknown']})")
    for stage, usage in info["teacher_usage"].items():
        click.echo(f"  teacher/{stage}: " + ", ".join(f"{k}={v}" for k, v in usage.items() if not isinstance(v, dict)))
    for selection in info["selections"]:
        totals = selection["totals"]
        share = totals.get("kept_tokens", 0) / max(1, totals.get("tokens_in", 0))
        mark = " (current: the report shows it)" if selection["current"] else ""
        click.echo(f"  selection {selection['name']}: {selection['method']}/{selection['mode']}, kept "
                   f"{totals.get('kept', 0):,} records, {share:.1%} of tokens{mark}")


@main.command(name="compare")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set compare.proxy.enabled=true")
@click.option("--dry-run", is_flag=True, help="List the selections it would build or reuse; run nothing.")
@click.option("--wait", is_flag=True,
              help="If another mira is writing to the run directory, wait for it instead of exiting.")
@click.option("--ablate", type=click.Choice(["cells", "sources"]), default=None,
              help="Also compare MIRA's selection without each cell (or source) it ranks by (compare.ablate).")
# A string, checked by the config (compare.replicates): a bad value is one line like any bad setting.
@click.option("--replicates", default=None, metavar="N",
              help="Judge MIRA over N annotation draws (compare.replicates; 1: the run's own labels only).")
@click.pass_context
def compare_command(ctx: click.Context, config: str, overrides: tuple[str, ...], dry_run: bool, wait: bool,
                    ablate: str | None, replicates: str | None) -> None:
    """Compare selection methods side by side at one budget (compare section of the config)."""
    from mira import api

    verbose = ctx.obj["verbose"]
    overrides += (f"compare.ablate={ablate}",) if ablate else ()
    overrides += (f"compare.replicates={replicates}",) if replicates is not None else ()
    cfg = _guard(lambda: _load(config, overrides), verbose)
    if dry_run:
        for line in _guard(lambda: api.compare_plan(cfg), verbose):
            click.echo(line)
        return

    progress, task = _progress_factory()
    with progress:
        result = _guard(lambda: api.compare(cfg, task, wait=wait), verbose)
    from mira.evaluation.tables import summary_lines

    for line, colour in summary_lines(result):
        click.secho(line, fg=colour)
    run_dir = cfg.resolved_run_dir()
    click.echo(f"comparison: {run_dir / 'compare' / 'summary.json'}")
    click.echo(f"report: {run_dir / 'report' / 'index.html'}")


@main.command(name="demo-data")
@click.option("--out", default="demo-data", show_default=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--scale", default=1.0, show_default=True, help="Multiply every source's record count.")
@click.pass_context
def demo_data(ctx: click.Context, out: str, seed: int, scale: float) -> None:
    """Build a real heterogeneous demo corpus from files on this machine."""
    from mira import api

    summary = _guard(lambda: api.build_demo_data(out, seed, scale), ctx.obj["verbose"])
    for name, info in summary["sources"].items():
        click.echo(f"  {name:<16} {info['records']:>6} records  {info['format']:<6} {info['file']}")
    for name, info in summary.get("eval_sets", {}).items():
        click.echo(f"  {name:<16} {info['records']:>6} records  {info['format']:<6} {info['file']} (held out)")
    for name, why in summary.get("skipped", {}).items():
        click.secho(f"  {name:<16} skipped: {why}", fg="yellow")
    click.echo(f"demo corpus written to {out}/ ({summary['records']} records, {len(summary['sources'])} sources)")


def _register_optional_groups() -> None:
    try:
        from mira.teacher.cli import teacher_group
    except ImportError:  # the teacher CLI is optional for the rest of the tool
        return
    main.add_command(teacher_group, name="teacher")


_register_optional_groups()
