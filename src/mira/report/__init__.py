"""The run report: one self-contained HTML page built from a run directory's artifacts.

``render_report(run_dir)`` works on any run, finished or not: each section reads the artifacts of
the stage it explains and shows a "stage not run yet" box when they are missing. A section that
fails on malformed artifacts shows the error in its place instead of taking the page down.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mira.io.files import atomic_write_text
from mira.report import readtests, sections, sections_compare, sections_scores
from mira.report.artifacts import Artifacts, NotRun
from mira.report.html import esc, missing_box, note
from mira.run.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    render: Callable[[Artifacts], str]


SECTIONS = (
    Section("overview", "Overview", sections.overview),
    Section("inventory", "Source inventory", sections.inventory),
    Section("groups", "Group map", sections.group_map),
    Section("rubrics", "Rubric cards", sections.rubric_cards),
    Section("scores", "Score distributions", sections_scores.score_distributions),
    Section("retention", "Retention", sections_scores.retention),
    Section("selections", "Selections", sections_compare.selections),
    Section("reliability", "Reliability", sections_scores.reliability),
    Section("length", "Score vs record length", sections_scores.length_dependence),
    Section("readtests", "Read-tests", readtests.read_tests),
    Section("comparison", "Comparison of methods", sections_compare.comparison),
)


def _resource(name: str) -> str:
    return resources.files("mira.report").joinpath(name).read_text(encoding="utf-8")


def _render_section(section: Section, artifacts: Artifacts) -> tuple[str, str]:
    """(body html, state) where state is "filled", "empty" (stage not run) or "error"."""
    try:
        return section.render(artifacts), "filled"
    except NotRun as missing:
        if missing.finished:
            return note(f"<strong>Artifacts missing.</strong> {esc(missing.detail)}", "missing"), "empty"
        return missing_box(missing.stage, missing.detail), "empty"
    except Exception as exc:  # noqa: BLE001 - one broken artifact must not hide the other sections
        log.exception("report section %s failed", section.id)
        return note(f"<strong>This section could not be rendered:</strong> <code>{esc(type(exc).__name__)}: "
                    f"{esc(exc)}</code>. Check the artifacts of this stage; the rest of the report is unaffected.",
                    "error section-error"), "error"


def render_report(run_dir: str | Path | RunDir) -> tuple[str, dict[str, str]]:
    """The report page for a run directory, and each section's state (filled / empty / error)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    artifacts = Artifacts(run)
    toc, body, states = [], [], {}
    for number, section in enumerate(SECTIONS, 1):
        html, state = _render_section(section, artifacts)
        states[section.id] = state
        hint = {"filled": "filled", "empty": "stage not run yet", "error": "error"}[state]
        toc.append(f'<li><a href="#{section.id}">{esc(section.title)}<span class="dot {state}" '
                   f'title="{hint}"></span></a></li>')
        body.append(f'<section id="{section.id}" data-state="{state}"><h2><span class="num">{number}</span>'
                    f"{esc(section.title)}</h2>{html}</section>")
    name = artifacts.run_name
    page = _resource("template.html")
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    if script:
        # Only our own script may run: a script smuggled in by record text would not match the hash.
        digest = base64.b64encode(hashlib.sha256(script.group(1).encode("utf-8")).digest()).decode()
        page = page.replace("script-src 'unsafe-inline'", f"script-src 'sha256-{digest}'")
    values = {"title": esc(f"mira report — {name}"), "run_name": esc(name), "style": _resource("style.css"),
              "toc": "\n".join(toc), "body": "\n".join(body),
              "generated": esc(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))}
    # One pass, so a value containing "{{...}}" (record text) is never expanded again.
    page = re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), page)
    return page, states


def write_report(run_dir: str | Path | RunDir) -> tuple[Path, dict[str, str]]:
    """Render and atomically write ``report/index.html``; returns its path and the section states."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(Path(run_dir))
    page, states = render_report(run)
    path = run.path("report", "index.html")
    atomic_write_text(path, page)
    return path, states


__all__ = ["SECTIONS", "render_report", "write_report"]
