"""The report's charts as SVG, drawn on the server: no chart library to ship or trust, no
script to run, a page that works with JavaScript off, and numbers a test can read back (each
point carries its value in ``data-value`` and a ``<title>`` for the pointer). Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    style: str  # a CSS class: its colour, its line or bar


# Round quarters of a time axis: minutes, hours, days as a clock reads them.
TIME_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def _nice(largest: float, unit: str = "count") -> float:
    """A top for the axis at or above ``largest`` whose quarters are round (1, 2, 2.5 or 5
    times a power of ten; for times, a clock's steps, then whole days)."""
    if largest <= 0:
        return 4
    if unit == "seconds":
        step = next((step for step in TIME_STEPS if largest <= 4 * step), None)
        return 4 * (step or 86400 * math.ceil(largest / 4 / 86400))
    quarter = largest / 4
    power = 10 ** math.floor(math.log10(quarter))
    for factor in (1, 2, 2.5, 5, 10):
        if quarter <= power * factor:
            return 4 * power * factor
    return largest


def _label(value: float, unit: str) -> str:
    if unit == "seconds":
        from tbhook.model.times import duration

        return duration(int(value))
    if unit == "rate":
        return f"{value * 100:.0f}%"
    return f"{value:,.0f}"


def chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "count",
    kind: str = "line",
    target: float | None = None,
) -> Markup:
    """One chart: ``series`` over ``labels`` (the periods), as lines or grouped bars; empty
    values leave a gap. ``unit``: count, seconds or rate (for the axis and the titles);
    ``target``: a dashed line across at that value (an SLA's)."""
    largest = max((v for s in series for v in s.values if v is not None), default=0.0)
    largest = max(largest, target or 0)
    top = _nice(largest, unit)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)
    step = plot_w / n

    def x(i: int) -> float:
        return LEFT + step * (i + 0.5)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" data-chart="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for k in range(5):  # the grid and the axis labels
        mark = top * k / 4
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(mark):.1f}" '
            f'y2="{y(mark):.1f}"/><text class="axis" x="{LEFT - 6}" y="{y(mark) + 4:.1f}" '
            f'text-anchor="end">{escape(_label(mark, unit))}</text>'
        )
    every = max(1, round(n / 8))
    for i, name in enumerate(labels):
        if i % every == 0:
            # the last label ends at the edge rather than past it
            anchor = "end" if x(i) + 3.2 * len(name) > WIDTH else "middle"
            at = min(x(i), WIDTH - 1) if anchor == "end" else x(i)
            parts.append(
                f'<text class="axis{" odd" if i // every % 2 else ""}" x="{at:.1f}" '
                f'y="{HEIGHT - 8}" text-anchor="{anchor}">'
                f"{escape(name)}</text>"
            )
    width = step * 0.8 / max(len(series), 1)
    for s_index, s in enumerate(series):
        points: list[tuple[float, float] | None] = []
        for i, value in enumerate(s.values):
            if value is None:
                points.append(None)
                continue
            tip = f"{labels[i]}: {s.name} {_label(value, unit)}"
            if kind == "bars":
                left = x(i) - step * 0.4 + width * s_index
                parts.append(
                    f'<rect class="{s.style}" x="{left:.1f}" y="{y(value):.1f}" '
                    f'width="{width:.1f}" height="{TOP + plot_h - y(value):.1f}" '
                    f'data-series="{escape(s.name)}" data-label="{escape(labels[i])}" '
                    f'data-value="{value:g}"><title>{escape(tip)}</title></rect>'
                )
            else:
                points.append((x(i), y(value)))
                parts.append(
                    f'<circle class="{s.style}" cx="{x(i):.1f}" cy="{y(value):.1f}" r="3" '
                    f'data-series="{escape(s.name)}" data-label="{escape(labels[i])}" '
                    f'data-value="{value:g}"><title>{escape(tip)}</title></circle>'
                )
        if kind == "line":
            for run in _runs(points):
                if len(run) > 1:
                    path = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                    parts.append(f'<polyline class="{s.style}" points="{path}"/>')
    legend = "".join(f'<span class="key {s.style}">{escape(s.name)}</span>' for s in series)
    if target is not None:
        said = f"target {_label(target, unit)}"
        parts.append(
            f'<line class="target" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(target):.1f}" '
            f'y2="{y(target):.1f}" data-target="{target:g}"><title>{escape(said)}</title></line>'
        )
        legend += f'<span class="key target">{escape(said)}</span>'
    parts.append("</svg>")
    return Markup(
        f'<figure class="figure"><figcaption>{escape(title)} {legend}</figcaption>'
        + "".join(parts)
        + "</figure>"
    )


def _runs(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]
