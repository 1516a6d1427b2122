"""A self-contained interactive HTML page of a run's trade-offs.

Hand-written SVG + JavaScript (template: ``page.html`` next to this module) instead of plotly:
no extra dependency, a page of tens of kilobytes rather than megabytes, and nothing fetched
from the network, so it opens offline and in a headless browser. Every point shows its trial,
scores and full recipe on hover; a slider replays the run and shows the front (red rings and
staircase) and the hypervolume as they were after each evaluation. The run's baselines (parents,
untuned merge) are black squares; each front row has its export command and a copy button.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path

import yaml

from evomerge.report.points import FrontData
from evomerge.report.summary import recipe_summary


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(float(value)) else None


def page_data(data: FrontData, title: str, subtitle: str = "", run: str | None = None) -> dict:
    """The JSON the page's script reads: objectives, one entry per trial, hypervolume curve;
    ``run`` (the RUN argument) lets each point show the command that exports it."""
    points = []
    for i, trial in enumerate(data.trials):
        points.append({
            "trial": trial.number,
            "idx": i,
            "values": [float(v) for v in data.values[i]],
            "left": data.left_front[i],
            "scores": {k: _finite(v) for k, v in trial.scores.items() if _finite(v) is not None},
            "summary": recipe_summary(trial.recipe),
            "recipe": yaml.safe_dump(trial.recipe, sort_keys=False, default_flow_style=None).strip(),
        })
    if not subtitle:
        subtitle = (f"{len(data.trials)} completed trials, {len(data.front)} on the final front; hypervolume "
                    f"{data.hypervolume:.6g} w.r.t. reference point ({', '.join(f'{r:.4g}' for r in data.reference)})"
                    if data.trials else "no completed trials yet")
    return {
        "title": title,
        "subtitle": subtitle,
        "objectives": [{"name": o.name, "direction": o.direction} for o in data.objectives],
        "points": points,
        "progress": [float(v) for v in data.progress],
        "reference": data.reference,
        "baselines": [{"label": label, "values": values} for label, values in data.baselines],
        "run": run,
    }


def render_html(data: FrontData, title: str, subtitle: str = "", run: str | None = None) -> str:
    """The page as a string; the data is embedded as JSON (``</`` escaped so it cannot end the
    script element early)."""
    payload = json.dumps(page_data(data, title, subtitle, run), allow_nan=False).replace("</", "<\\/")
    template = resources.files("evomerge.report").joinpath("page.html").read_text(encoding="utf-8")
    head, tail = template.split("__DATA__")
    return head.replace("__TITLE__", html.escape(title)) + payload + tail


def write_html(data: FrontData, out: str | Path, title: str, subtitle: str = "", run: str | None = None) -> Path:
    """Write the page (atomically, so a reader never sees half a file) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_html(data, title, subtitle, run), encoding="utf-8")
    tmp.replace(out)
    return out
