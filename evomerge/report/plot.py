"""A static PNG of the run's trade-offs: every trial coloured by evaluation index (integer
ticks), the final front highlighted, the baselines (parents, untuned merge) marked, and the
hypervolume curve showing how the front grew."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from evomerge.report.points import FrontData


def plot_front(data: FrontData, out: str | Path, title: str = "") -> Path:
    """Write the PNG and return its path. One objective: value vs. evaluation; two or more:
    one panel per pair of objectives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    k = len(data.objectives)
    pairs = list(combinations(range(k), 2)) if k >= 2 else [(0, None)]
    fig, axes = plt.subplots(1, len(pairs) + 1, figsize=(5 * (len(pairs) + 1), 4.2), squeeze=False,
                             layout="constrained")
    n = len(data.trials)
    order = list(range(n))
    front = sorted(data.front, key=lambda i: tuple(data.values[i]))
    for ax, (a, b) in zip(axes[0], pairs):
        if b is None:
            ax.scatter(order, data.values[:, a], c=order, cmap="viridis", s=18)
            for label, vals in data.baselines:
                ax.axhline(vals[a], color="0.3", lw=0.8, ls="--")
                ax.annotate(label, (0, vals[a]), xytext=(2, 2), textcoords="offset points", fontsize=7, color="0.2")
            ax.set_xlabel("evaluation")
            ax.set_ylabel(_label(data, a))
            continue
        sc = ax.scatter(data.values[:, a], data.values[:, b], c=order, cmap="viridis", s=18, alpha=0.8)
        fx, fy = data.values[front, a], data.values[front, b]
        ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="crimson", linewidths=1.5, label="Pareto front")
        if k == 2:
            ax.plot(fx, fy, color="crimson", lw=1, drawstyle=_steps(data))
        if data.baselines:
            ax.scatter([v[a] for _, v in data.baselines], [v[b] for _, v in data.baselines], marker="X", s=60,
                       color="black", label="baselines (parents, untuned merge)", zorder=3)
            for label, vals in data.baselines:
                ax.annotate(label, (vals[a], vals[b]), xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.set_xlabel(_label(data, a))
        ax.set_ylabel(_label(data, b))
        ax.legend(loc="best", fontsize=8)
    if n:
        from matplotlib.ticker import MaxNLocator

        bar = fig.colorbar(sc if k >= 2 else ax.collections[0], ax=axes[0][: len(pairs)].tolist(),
                           label="evaluation index")
        bar.locator = MaxNLocator(integer=True)   # evaluations are counted, not measured
        bar.update_ticks()
    hv = axes[0][-1]
    hv.plot(range(1, n + 1), data.progress, color="navy")
    hv.set_xlabel("evaluations")
    hv.set_ylabel("hypervolume" if k >= 2 else "dominated length")
    hv.set_title("front progress", fontsize=10)
    fig.suptitle(title or f"{n} trials, {len(data.front)} on the front")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _label(data: FrontData, i: int) -> str:
    obj = data.objectives[i]
    return f"{obj.name} ({'higher' if obj.direction == 'maximize' else 'lower'} is better)"


def _steps(data: FrontData) -> str:
    """The attainment staircase (outer corners of the dominated region) for equal directions."""
    a, b = data.objectives[0].direction, data.objectives[1].direction
    if a != b:
        return "default"
    return "steps-pre" if a == "maximize" else "steps-post"
