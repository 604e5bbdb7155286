"""The report's figures as PNG data URIs (matplotlib, no display), so report.html stays one file that opens offline."""

from __future__ import annotations

import base64
import functools
import io
import itertools
import logging
import math
from typing import Any

BLUE, RED, GREY, GREEN = "#4c78a8", "#e45756", "#9d9d9d", "#54a24b"
_STYLE = {"axes.spines.top": False, "axes.spines.right": False, "font.size": 9, "axes.titlesize": 10}


@functools.cache
def _plt() -> Any:
    """pyplot, imported on first use: 0.3 s that only the end of a run needs, not every process's start."""
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: workers and CI have no display
    # Labels such as grades "1".."5" are categories on purpose; matplotlib logs a note for each such bar chart.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    import matplotlib.pyplot

    return matplotlib.pyplot


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def funnel(stages: list[tuple[str, int, str]]) -> str:
    """Horizontal bars, top to bottom: (label, rows, kind) with kind one of flow, drop, kept, error."""
    colors = {"flow": BLUE, "drop": RED, "kept": GREEN, "error": GREY}
    with _plt().rc_context(_STYLE):
        fig, ax = _plt().subplots(figsize=(7.5, 0.38 * len(stages) + 0.6))
        labels = [s[0] for s in stages][::-1]
        values = [s[1] for s in stages][::-1]
        bars = ax.barh(labels, values, color=[colors[s[2]] for s in stages][::-1])
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
        ax.set_xlabel("rows")
        ax.margins(x=0.12)
        return _png(fig)


def throughput(generation: list[list[float]], commits: list[list[float]], bins: int = 60) -> str | None:
    """Completion tokens/s and samples/s the engines produced (counted as seeds finish, in up to ``bins`` time bins),
    then samples generated and rows committed to the sink, cumulative. Times are seconds since the command started."""
    if not generation and not commits:
        return None
    end = max([p[0] for p in generation] + [p[0] for p in commits] + [1.0])
    width = max(1.0, math.ceil(end / bins))
    tokens: dict[int, float] = {}
    samples: dict[int, float] = {}
    for t, tok, done in generation:
        tokens[int(t // width)] = tokens.get(int(t // width), 0) + tok
        samples[int(t // width)] = samples.get(int(t // width), 0) + done
    with _plt().rc_context(_STYLE):
        fig, (top, middle, bottom) = _plt().subplots(3, 1, figsize=(7.5, 5.0), sharex=True)
        for ax, binned, label in ((top, tokens, "completion tok/s"), (middle, samples, "samples/s")):
            ax.bar([(b + 0.5) * width for b in binned], [v / width for v in binned.values()], width=width, color=BLUE)
            ax.set_ylabel(label)
        if generation:
            done = list(itertools.accumulate(p[2] for p in generation))
            bottom.step([0, *(p[0] for p in generation)], [0, *done], where="post", color=BLUE, label="generated")
        if commits:
            rows = [0, *(p[2] for p in commits)]
            bottom.step([0, *(p[0] for p in commits)], rows, where="post", color=GREEN, label="committed rows")
        bottom.set_ylabel("cumulative")
        bottom.set_xlabel("seconds since the command started")
        bottom.legend(loc="upper left", frameon=False)
        return _png(fig)


def histograms(series: dict[str, list[float]], xlabel: str, bins: int = 30) -> str | None:
    """One histogram per named series, side by side."""
    series = {name: values for name, values in series.items() if values}
    if not series:
        return None
    with _plt().rc_context(_STYLE):
        fig, axes = _plt().subplots(1, len(series), figsize=(min(3.2 * len(series), 11), 2.6), squeeze=False)
        for ax, (name, values) in zip(axes[0], series.items(), strict=True):
            distinct = sorted(set(values))
            if len(distinct) <= 12 and all(float(v).is_integer() for v in distinct):  # scores 1–10, labels as ints
                counts = [values.count(v) for v in distinct]
                ax.bar([str(int(v)) for v in distinct], counts, color=BLUE)
            else:
                ax.hist(values, bins=bins, color=BLUE)
            ax.set_title(name)
            ax.set_xlabel(xlabel)
        axes[0][0].set_ylabel("rows")
        return _png(fig)


def balance(counts: dict[str, dict[str, int]], top: int = 15) -> str | None:
    """Value counts of each label/attribute column (its ``top`` values)."""
    if not counts:
        return None
    with _plt().rc_context(_STYLE):
        fig, axes = _plt().subplots(1, len(counts), figsize=(min(3.6 * len(counts), 11), 2.8), squeeze=False)
        for ax, (column, values) in zip(axes[0], counts.items(), strict=True):
            items = sorted(values.items(), key=lambda kv: -kv[1])[:top][::-1]
            ax.barh([str(k)[:28] for k, _ in items], [v for _, v in items], color=BLUE)
            ax.set_title(column)
            ax.set_xlabel("kept rows")
        return _png(fig)


def reliability(table: list[dict[str, Any]]) -> str | None:
    """Accuracy against mean confidence per confidence bin (the gold-set reliability table), with the diagonal a
    calibrated labeller would follow; marker area grows with the bin's rows."""
    if not table:
        return None
    with _plt().rc_context(_STYLE):
        fig, ax = _plt().subplots(figsize=(4.2, 3.6))
        ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="calibrated")
        xs, ys = [r["confidence"] for r in table], [r["accuracy"] for r in table]
        ax.plot(xs, ys, color=BLUE, marker="o", linewidth=1.2, label="labels")
        ax.scatter(xs, ys, s=[12 + 4 * r["count"] for r in table], color=BLUE, alpha=0.35)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy on gold")
        ax.legend(loc="upper left", frameon=False)
        return _png(fig)


def semantic_map(points: list[list[float]], labels: list[str] | None, top: int = 8) -> str | None:
    """The 2-D PCA map of a sample of kept rows; with labels, one colour for each of the ``top`` most frequent and
    grey for the rest."""
    if not points:
        return None
    with _plt().rc_context(_STYLE):
        fig, ax = _plt().subplots(figsize=(5.2, 4.2))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if labels is None:
            ax.scatter(xs, ys, s=10, color=BLUE, alpha=0.6)
        else:
            counts: dict[str, int] = {}
            for label in labels:
                counts[label] = counts.get(label, 0) + 1
            shown = sorted(counts, key=lambda k: -counts[k])[:top]
            colours = _plt().get_cmap("tab10")
            for i, label in enumerate(shown):
                at = [k for k, v in enumerate(labels) if v == label]
                ax.scatter([xs[k] for k in at], [ys[k] for k in at], s=10, alpha=0.7, color=colours(i), label=label)
            rest = [k for k, v in enumerate(labels) if v not in shown]
            if rest:
                ax.scatter([xs[k] for k in rest], [ys[k] for k in rest], s=8, color=GREY, alpha=0.5, label="other")
            ax.legend(loc="best", frameon=False, fontsize=7, markerscale=1.5)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        return _png(fig)
