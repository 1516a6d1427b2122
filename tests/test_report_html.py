"""The Pareto report: table, PNG, and the HTML page rendered in headless Chromium.

Why Chromium's own command line (``--dump-dom``, ``--screenshot``, ``--enable-logging``) rather
than a DevTools-protocol client: it needs nothing beyond the Debian package, downloads no
browser, and covers what we check — the DOM after the page's scripts ran, the console
(every message is logged as ``CONSOLE``; the page itself logs nothing, so any line is a
failure), and a picture. Interactions (slider, hover) are driven by a small script appended to
a copy of the page, which records what it saw into the DOM for ``--dump-dom`` to return.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from evomerge.report.html import write_html
from evomerge.report.plot import plot_front
from evomerge.report.points import Objective, front_data
from evomerge.report.table import front_table
from evomerge.runtime.records import TrialRecord

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]

# (math accuracy, words accuracy) per evaluation, in finishing order
VALUES = [(0.2, 0.6), (0.5, 0.5), (0.3, 0.3), (0.6, 0.55), (0.1, 0.8), (0.4, 0.7), (0.7, 0.2), (0.55, 0.52)]


def _trials() -> list[TrialRecord]:
    t0 = datetime(2026, 11, 25, 12, 0, 0)
    out = []
    for i, (m, w) in enumerate(VALUES):
        recipe = {"kind": "parameter", "method": "ties", "base": "zoo:base",
                  "sources": [{"model": "zoo:math", "parameters": {"weight": round(0.1 * i, 2), "density": 0.5}},
                              {"model": "zoo:words", "parameters": {"weight": 1.0, "density": 0.7}}],
                  "parameters": {"lambda": 1.0}, "dtype": "float32", "seed": 0}
        out.append(TrialRecord(number=i, state="complete", genome=[0.1 * i], recipe=recipe,
                               objectives={"math": m, "words": w}, scores={"math": m, "words": w, "ppl": 10 - i},
                               finished=t0 + timedelta(minutes=i)))
    out.append(TrialRecord(number=99, state="failed", genome=[0.0], recipe={}, objectives={}, error="NaN weights"))
    return out


OBJS = [Objective("math", "maximize"), Objective("words", "maximize")]
FINAL_FRONT = {4, 5, 3, 6}           # trial numbers
FRONT_AFTER_3 = {0, 1}               # after evaluations 0, 1, 2


def test_front_data_orders_trials_and_finds_the_front():
    data = front_data(_trials(), OBJS)
    assert [t.number for t in data.trials] == list(range(len(VALUES)))  # the failed trial is left out
    assert {data.trials[i].number for i in data.front} == FINAL_FRONT
    assert data.progress == sorted(data.progress)


def test_table_lists_front_with_recipe_summary():
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(front_table(front_data(_trials(), OBJS)))
    text = console.export_text()
    rows = [line for line in text.splitlines() if re.match(r"^\s*│?\s*\d+\s", line)]
    assert [int(re.findall(r"\d+", r)[0]) for r in rows] == [6, 3, 5, 4]  # by math, best first
    assert "ties lambda=1 math(w=0.6 d=0.5) words(w=1 d=0.7) base=base" in text
    assert "hypervolume" in text


def test_png_is_written(tmp_path):
    out = plot_front(front_data(_trials(), OBJS), tmp_path / "front.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_html_is_self_contained(tmp_path):
    page = write_html(front_data(_trials(), OBJS), tmp_path / "front.html", "demo </script> run").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<\\/script>" in page and page.count("</script>") == 2   # title cannot close the script


DRIVER = """
<script>
(function () {
  const b = document.body, slider = document.getElementById("step");
  b.dataset.frontFinal = b.dataset.front;
  slider.value = 3; slider.dispatchEvent(new Event("input"));
  b.dataset.frontAt3 = b.dataset.front;
  b.dataset.shownAt3 = b.dataset.shown;
  slider.value = slider.max; slider.dispatchEvent(new Event("input"));
  const c = document.querySelector('circle[data-trial="5"]');
  const r = c.getBoundingClientRect();
  c.dispatchEvent(new MouseEvent("mouseenter", {clientX: r.x, clientY: r.y}));
  b.dataset.tip = document.getElementById("tip").textContent;
  b.dataset.tipShown = document.getElementById("tip").style.display;
  c.dispatchEvent(new MouseEvent("mouseleave"));
  b.dataset.tipAfterLeave = document.getElementById("tip").style.display;
  c.dispatchEvent(new MouseEvent("click", {clientX: r.x, clientY: r.y, bubbles: true}));
  c.dispatchEvent(new MouseEvent("mouseleave"));
  b.dataset.tipPinned = document.getElementById("tip").style.display;
})();
</script>
"""


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it as root)")
def test_html_page_in_headless_chromium(tmp_path):
    # the console capture itself works: a page with an error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert any("undefinedFunction" in line for line in _console_lines(_chromium(["--dump-dom", bad.as_uri()], tmp_path).stderr))

    data = front_data(_trials(), OBJS)
    page = write_html(data, tmp_path / "front.html", "test run", run="runs/demo")
    plain = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert _console_lines(plain.stderr) == []
    assert 'data-ready="1"' in plain.stdout
    assert len(re.findall(r"<circle[^>]*data-trial=", plain.stdout)) == len(VALUES)

    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text().replace("</body>", DRIVER + "</body>"))
    run = _chromium(["--dump-dom", driven.as_uri()], tmp_path)
    assert _console_lines(run.stderr) == []
    attrs = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', run.stdout.split("<body", 1)[1].split(">", 1)[0]))
    assert set(map(int, attrs["front-final"].split(","))) == FINAL_FRONT
    assert set(map(int, attrs["front-at3"].split(","))) == FRONT_AFTER_3
    assert attrs["shown-at3"] == "3"
    assert attrs["tip-shown"] == "block" and attrs["tip-after-leave"] == "none"
    assert attrs["tip-pinned"] == "block"   # a click pins the box so its recipe can be copied
    tip = attrs["tip"]
    for needle in ("trial 5", "math: 0.4", "words: 0.7", "ppl: 5", "method: ties", "weight: 0.5",
                   "evomerge export runs/demo --trial 5 --out trial-5"):
        assert needle in tip

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_front.png"
    shot.unlink(missing_ok=True)
    _chromium(["--window-size=1100,900", "--hide-scrollbars", f"--screenshot={shot}", driven.as_uri()], tmp_path)
    assert shot.exists() and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it as root)")
@pytest.mark.parametrize("objectives", [[Objective("math", "maximize")],
                                        [Objective("math", "maximize"), Objective("words", "maximize"), Objective("ppl", "minimize")]])
def test_html_page_with_one_or_three_objectives(tmp_path, objectives):
    data = front_data(_trials(), objectives)
    page = write_html(data, tmp_path / "front.html", "test run")
    run = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert _console_lines(run.stderr) == []
    assert len(re.findall(r"<circle[^>]*data-trial=", run.stdout)) == len(VALUES)
    front = re.search(r'data-front="([^"]*)"', run.stdout).group(1)
    assert {int(t) for t in front.split(",")} == {data.trials[i].number for i in data.front}
    if len(objectives) == 3:
        assert 'id="axis-x"' in run.stdout and 'id="axis-y"' in run.stdout


BASELINES = {"parent math": {"objectives": {"math": 0.45, "words": 0.1}, "scores": {"math": 0.45, "words": 0.1}},
             "parent words": {"objectives": {"math": 0.05, "words": 0.65}, "scores": {"math": 0.05, "words": 0.65}},
             "untuned merge": {"error": "NaN weights"}}


def test_png_marks_baselines_and_counts_evaluations_in_whole_numbers(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    data = front_data(_trials(), OBJS, baselines=BASELINES)
    assert [label for label, _ in data.baselines] == ["parent math", "parent words"]   # the failed one is left out
    plot_front(data, tmp_path / "front.png")
    fig = figures[0]
    bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    ticks = [t for t in bar.get_yticks() if 0 <= t <= len(VALUES) - 1]
    assert ticks and all(float(t).is_integer() for t in ticks)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "parent math" in texts and "parent words" in texts


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it as root)")
def test_html_page_shows_baselines_round_ticks_and_an_export_command_per_front_trial(tmp_path):
    data = front_data(_trials(), OBJS, baselines=BASELINES)
    page = write_html(data, tmp_path / "front.html", "test run", run="runs/demo")
    run = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert _console_lines(run.stderr) == []
    assert re.findall(r'<rect[^>]*data-label="([^"]+)"', run.stdout) == ["parent math", "parent words"]
    scatter = run.stdout.split('id="scatter"', 1)[1].split("</svg>", 1)[0]
    ticks = re.findall(r'<text[^>]*text-anchor="(?:middle|end)"[^>]*>(-?[0-9.]+)</text>', scatter)
    assert len(ticks) >= 6 and all(len(t.rstrip("0").split(".")[-1]) <= 2 or "." not in t for t in ticks), ticks
    commands = re.findall(r"<code>(evomerge export runs/demo --trial (\d+) --out trial-\d+)</code>", run.stdout)
    assert {int(n) for _, n in commands} == FINAL_FRONT
    assert run.stdout.count(">copy</button>") == len(FINAL_FRONT)
