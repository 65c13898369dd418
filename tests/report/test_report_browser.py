"""Render the report in headless Chromium: plots in the DOM, our script runs, nothing else does.

The screenshot is kept as ``test-artifacts/report.png`` (gitignored) for a person to look at.
"""

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mira.report import write_report
from tests.report.fixture_run import INJECTION, build_fixture_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PLOTS = ("similarity", "kscores", "scores", "retention", "length")
# Console problems Chromium logs to stderr: script errors and CSP refusals (our script's hash).
CONSOLE_PROBLEMS = ("Uncaught", "ERROR:CONSOLE", "violates the following Content Security Policy", "Refused to")

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`)"),
    pytest.mark.slow,
]


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    path, _ = write_report(build_fixture_run(root / "run"))
    return root, path


def test_dom_has_plots_and_no_console_errors(report):
    root, path = report
    result = _chromium(root / "profile-dom", "--dump-dom", path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for plot in PLOTS:
        assert f'data-plot="{plot}"' in dom, plot
    assert dom.count("<svg") >= len(PLOTS)
    problems = [line for line in result.stderr.splitlines() if any(p in line for p in CONSOLE_PROBLEMS)]
    assert not problems, problems
    # Our sort script ran (it marks headers focusable), so the CSP hash matches it...
    assert 'tabindex="0"' in dom
    # ...and the record's <script> stayed text: it is not an element in the live DOM.
    assert INJECTION not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_screenshot(report):
    root, path = report
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "report.png"
    target.unlink(missing_ok=True)
    result = _chromium(root / "profile-shot", f"--screenshot={target}", "--window-size=1280,4000", path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.exists() and target.stat().st_size > 50_000  # a rendered page, not a blank one


def _layout(root: Path, page: str, name: str, width: int) -> tuple[int, int]:
    """The laid-out width (``scrollWidth``) of `page` in a `width`-px-wide viewport, and how far
    down its overview section starts.

    Headless Chromium will not make a window narrower than 500 px, so the page is laid out in an
    iframe of the wanted width (``srcdoc``: same origin, so the outer page may measure it).
    """
    probe = ("<script>window.addEventListener('load', function () { var d = document.getElementById('page')"
             ".contentDocument; document.body.setAttribute('data-page-width', "
             "String(d.documentElement.scrollWidth)); document.body.setAttribute('data-overview-top', "
             "String(Math.round(d.getElementById('overview').getBoundingClientRect().top))); });</script>")
    wrapper = (f'<!DOCTYPE html><html><body style="margin:0"><iframe id="page" style="border:0" width="{width}" '
               f'height="900" srcdoc="{html.escape(page, quote=True)}"></iframe>{probe}</body></html>')
    path = root / f"{name}.html"
    path.write_text(wrapper, encoding="utf-8")
    result = _chromium(root / f"profile-{name}", "--dump-dom", f"--window-size={max(width, 500) + 40},900",
                       path.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'data-page-width="(\d+)" data-overview-top="(\d+)"', result.stdout)
    assert found, result.stdout[-500:]
    return int(found.group(1)), int(found.group(2))


def test_the_page_fits_a_phone_screen(report):
    # At 420 px the narrow-screen grid track was `1fr`, at least as wide as its widest table, so the
    # whole page was 1,077 px wide; wide tables must scroll inside their own box instead.
    root, path = report
    page = path.read_text(encoding="utf-8")
    width, overview_top = _layout(root, page, "phone", 420)
    assert width <= 420
    # The overview (where a mostly random selection is said) starts on the first screen: the table
    # of contents above it is a few wrapped lines, not a 500 px column.
    assert overview_top < 450
    assert _layout(root, page, "desktop", 1280)[0] <= 1280
