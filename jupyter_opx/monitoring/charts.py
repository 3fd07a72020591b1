"""Small SVG charts for the feedback report and dashboard, with no dependencies.

Each function is pure: values in, an ``<svg>`` string out, meant to be inlined
in HTML (no ``xmlns``, no script, no external font, so a page holding them
opens offline). Every chart has a title, axis labels and readable ticks
(dates when the x values are time windows), is announced as one image
(``role="img"`` with ``<title>`` and a generated ``<desc>`` that states the
figures), and draws text and axes in ``currentColor`` so it follows the page's
light or dark theme. Missing values (None, NaN) leave gaps, never a zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from html import escape
from typing import Any

PALETTE = ("#2563eb", "#ea580c", "#059669", "#9333ea", "#0891b2", "#be185d", "#65a30d")
LEVEL_COLORS = ("#16a34a", "#d97706", "#dc2626")  # below, between, above the guides
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
PSI_GUIDES = ((0.1, "0.1 moderate"), (0.25, "0.25 large"))

Numbers = Sequence[Any]


def _finite(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 × 10ⁿ)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    # a little under ``raw`` is fine: 0.5 to 1.0 reads better in steps of 0.1 than 0.2
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= 0.75 * raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, k = [], 0
    while True:
        value = first + k * step
        ticks.append(round(value, 12))
        if value >= hi - 1e-9 * step:
            return ticks
        k += 1


def format_number(value: float, step: float | None = None, percent: bool = False) -> str:
    """A tick or value label: ``0.25``, ``1,200``, ``12k``, ``2.5M`` or ``35%``."""
    if percent:
        value, step = value * 100, (step or 0) * 100 or None
    magnitude = abs(value)
    if not percent and magnitude >= 1e6:
        text = f"{value / 1e6:.3g}M"
    elif not percent and magnitude >= 1e4:
        text = f"{value / 1e3:.3g}k"
    else:
        if step:
            exact = (d for d in range(5) if abs(step * 10**d - round(step * 10**d)) < 1e-6)
            decimals = next(exact, 4)
        elif magnitude >= 100 or value == int(value):
            decimals = 0
        else:
            decimals = 2 if magnitude < 10 else 1
        text = f"{value:,.{decimals}f}"
    if text.startswith("-") and not any(c in "123456789" for c in text):
        text = text[1:]  # "-0.00" from rounding a tiny negative
    return text.replace("-", "−") + ("%" if percent else "")


def format_labels(x: Sequence[Any]) -> list[str]:
    """Readable x labels: dates (``Mar 02``, with the hour when windows are shorter
    than a day, the year when they span several), else the values as text."""
    stamps = [_as_datetime(v) for v in x]
    if not x or any(s is None for s in stamps):
        return [str(v) for v in x]
    times = [s for s in stamps if s is not None]
    with_hours = any((s.hour, s.minute) != (0, 0) for s in times)
    fmt = "%b %d"
    if len({s.year for s in times}) > 1:
        fmt = "%Y %b %d"
    if with_hours:
        fmt += " %H:%M"
    return [s.strftime(fmt) for s in times]


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    to_py = getattr(value, "to_pydatetime", None)  # pandas Timestamp, without importing pandas
    if callable(to_py):
        result = to_py()
        return result if isinstance(result, datetime) else None
    return None


def _pick_ticks(n: int, most: int = 8) -> list[int]:
    """Evenly spread indices of at most ``most`` labelled ticks, first and last included."""
    most = max(most, 2)
    if n <= most:
        return list(range(n))
    step = math.ceil((n - 1) / (most - 1))
    picks = list(range(0, n, step))
    if n - 1 - picks[-1] <= step / 2:
        picks[-1] = n - 1  # too close to the last to label both
    else:
        picks.append(n - 1)
    return picks


class _Frame:
    """The plot area of a chart, and the mapping of values into it."""

    def __init__(self, width: int, height: int, left: int, top: int, right: int, bottom: int):
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = top, height - bottom  # y1 is the bottom edge in pixels
        self.lo, self.hi = 0.0, 1.0

    def scale(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi if hi > lo else lo + 1

    def y(self, value: float) -> float:
        return self.y1 - (value - self.lo) / (self.hi - self.lo) * (self.y1 - self.y0)


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    head = (
        f'<svg class="opx-chart" role="img" aria-label="{_e(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" '
        f'style="max-width:100%;height:auto;font-family:{_e(FONT)}">'
        f"<title>{_e(title)}</title><desc>{_e(desc)}</desc>"
        f'<text x="8" y="18" font-size="14" font-weight="600" fill="currentColor">'
        f"{_e(title)}</text>"
    )
    return head + "".join(body) + "</svg>"


def _y_axis(f: _Frame, ticks: list[float], label: str, percent: bool) -> list[str]:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    out = []
    for t in ticks:
        y = f.y(t)
        out.append(
            f'<line x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
            f'stroke-opacity="0.12"/><text x="{f.x0 - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="currentColor">{_e(format_number(t, step, percent))}</text>'
        )
    mid = (f.y0 + f.y1) / 2
    out.append(
        f'<text transform="translate(13 {mid:.1f}) rotate(-90)" font-size="11" '
        f'text-anchor="middle" fill="currentColor" fill-opacity="0.8">{_e(label)}</text>'
    )
    return out


def _x_axis(f: _Frame, xs: list[float], labels: list[str], label: str) -> list[str]:
    out = [
        f'<line x1="{f.x0}" x2="{f.x1}" y1="{f.y1}" y2="{f.y1}" stroke="currentColor" '
        f'stroke-opacity="0.5"/>'
    ]
    char = 7.0  # a generous average glyph width at 11px, so labels never collide
    widest = char * max((len(s) for s in labels), default=1)
    picks = _pick_ticks(len(labels), min(8, int((f.x1 - f.x0) // (widest + 14))))
    if len(picks) > 2 and xs[picks[-1]] - xs[picks[-2]] < widest + 8:
        del picks[-2]  # the last window keeps its label; its neighbour gives way
    for i in picks:
        half = char * len(labels[i]) / 2
        anchor = "end" if xs[i] + half > f.width - 2 else "middle"
        x = f.width - 2 if anchor == "end" else xs[i]
        out.append(
            f'<text x="{x:.1f}" y="{f.y1 + 16}" font-size="11" text-anchor="{anchor}" '
            f'fill="currentColor">{_e(labels[i])}</text>'
        )
    out.append(
        f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{f.height - 6}" font-size="11" '
        f'text-anchor="middle" fill="currentColor" fill-opacity="0.8">{_e(label)}</text>'
    )
    return out


def _legend(f: _Frame, items: list[tuple[str, str, str]]) -> list[str]:
    """``(name, color, kind)`` entries in a row under the title; kind: line, band, bar, guide."""
    out, x = [], 8.0
    for name, color, kind in items:
        if kind == "band":
            out.append(
                f'<rect x="{x:.1f}" y="29" width="14" height="10" fill="{color}" opacity="0.18"/>'
            )
        elif kind == "bar":
            out.append(f'<rect x="{x:.1f}" y="29" width="14" height="10" fill="{color}"/>')
        else:
            dash = ' stroke-dasharray="4 3"' if kind == "guide" else ""
            out.append(
                f'<line x1="{x:.1f}" x2="{x + 14:.1f}" y1="34" y2="34" stroke="{color}" '
                f'stroke-width="2"{dash}/>'
            )
        out.append(
            f'<text x="{x + 18:.1f}" y="38" font-size="11" fill="currentColor">{_e(name)}</text>'
        )
        x += 30 + 6.5 * len(name)
    return out


def _guide_lines(f: _Frame, guides: Sequence[tuple[float, str]]) -> list[str]:
    out = []
    for value, label in guides:
        if not f.lo <= value <= f.hi:
            continue
        y = f.y(value)
        out.append(
            f'<line class="guide" x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="currentColor" stroke-opacity="0.55" stroke-dasharray="5 4"/>'
            f'<text x="{f.x1 - 2}" y="{y - 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="currentColor" fill-opacity="0.75">{_e(label)}</text>'
        )
    return out


def _runs(values: list[float | None]) -> list[list[int]]:
    """Indices of the consecutive runs of present values (a missing value breaks a line)."""
    runs: list[list[int]] = []
    current: list[int] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def _extent(
    columns: Sequence[Sequence[float | None]], floor: float | None, ceiling: float | None
) -> tuple[float, float, bool]:
    """The value range to show: the data's, widened to ``floor`` / ``ceiling``."""
    present = [v for col in columns for v in col if v is not None]
    lo = min(present) if present else 0.0
    hi = max(present) if present else 1.0
    if floor is not None:
        lo = floor if not present or floor <= lo else lo
    if ceiling is not None:
        hi = ceiling if not present or ceiling >= hi else hi
    return lo, hi, bool(present)


def _summary(name: str, values: list[float | None], labels: list[str], percent: bool) -> str:
    present = [(labels[i], v) for i, v in enumerate(values) if v is not None]
    if not present:
        return f"{name}: no data."
    last_label, last = present[-1]
    low = min(v for _, v in present)
    high = max(v for _, v in present)
    return (
        f"{name}: latest {format_number(last, percent=percent)} ({last_label}), "
        f"range {format_number(low, percent=percent)} to {format_number(high, percent=percent)}."
    )


def line_chart(
    x: Sequence[Any],
    series: Mapping[str, Numbers],
    *,
    title: str,
    y_label: str,
    x_label: str = "window (UTC)",
    band: tuple[Numbers, Numbers] | None = None,
    band_label: str = "95% CI",
    guides: Sequence[tuple[float, str]] = (),
    y_range: tuple[float | None, float | None] = (None, None),
    percent: bool = False,
    width: int = 640,
    height: int = 250,
) -> str:
    """A line chart over windows.

    Parameters
    ----------
    x : sequence
        Window labels (timestamps, dates, numbers or text), evenly spaced.
    series : mapping of name to sequence of numbers
        One line per entry, each as long as ``x``; None or NaN leaves a gap.
    title, y_label, x_label : str
        Chart title and axis labels.
    band : (low, high), optional
        A shaded band (a confidence interval) behind the first series.
    guides : sequence of (value, label)
        Dashed horizontal lines (thresholds), e.g. ``[(0, "no effect")]``.
    y_range : (min, max)
        Bounds the axis always includes (None: from the data).
    percent : bool
        Show values as percentages (0.25 → 25%).

    Returns
    -------
    str
        The ``<svg>`` element; each present value is one ``<circle class="pt">``.
    """
    labels = format_labels(list(x))
    cols = {name: [_finite(v) for v in values] for name, values in series.items()}
    low = [_finite(v) for v in band[0]] if band else []
    high = [_finite(v) for v in band[1]] if band else []
    lengths = {name: len(col) for name, col in cols.items()}
    if band is not None:
        lengths.update({"band low": len(low), "band high": len(high)})
    for name, length in lengths.items():
        if length != len(labels):
            raise ValueError(f"{name}: {length} values for {len(labels)} windows")
    f = _Frame(width, height, left=62, top=48, right=16, bottom=44)
    guide_values: list[float | None] = [g[0] for g in guides]
    lo, hi, _ = _extent([*cols.values(), low, high, guide_values], *y_range)
    has_data = any(v is not None for col in cols.values() for v in col)
    ticks = nice_ticks(lo, hi)
    f.scale(ticks[0], ticks[-1])
    n = len(labels)
    xs = [
        (f.x0 + f.x1) / 2 if n == 1 else f.x0 + 8 + i * (f.x1 - f.x0 - 16) / (n - 1)
        for i in range(n)
    ]
    body = _y_axis(f, ticks, y_label, percent) + _x_axis(f, xs, labels, x_label)
    legend: list[tuple[str, str, str]] = []
    if band is not None:
        pairs: list[float | None] = [
            None if a is None or b is None else a for a, b in zip(low, high, strict=True)
        ]
        color = PALETTE[0]
        for run in _runs(pairs):
            top = " ".join(f"{xs[i]:.1f},{f.y(high[i] or 0):.1f}" for i in run)
            bottom = " ".join(f"{xs[i]:.1f},{f.y(low[i] or 0):.1f}" for i in reversed(run))
            if len(run) == 1:
                i = run[0]
                body.append(
                    f'<line class="band" x1="{xs[i]:.1f}" x2="{xs[i]:.1f}" '
                    f'y1="{f.y(low[i] or 0):.1f}" y2="{f.y(high[i] or 0):.1f}" '
                    f'stroke="{color}" stroke-opacity="0.35" stroke-width="6"/>'
                )
            else:
                body.append(
                    f'<polygon class="band" points="{top} {bottom}" fill="{color}" '
                    f'fill-opacity="0.18"/>'
                )
        legend.append((band_label, color, "band"))
    body += _guide_lines(f, guides)
    radius = 3 if n <= 60 else 1.8
    for k, (name, col) in enumerate(cols.items()):
        color = PALETTE[k % len(PALETTE)]
        legend.append((name, color, "line"))
        for run in _runs(col):
            if len(run) > 1:
                pts = " ".join(f"{xs[i]:.1f},{f.y(col[i] or 0):.1f}" for i in run)
                body.append(
                    f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2" '
                    f'stroke-linejoin="round"/>'
                )
        for i, v in enumerate(col):
            if v is not None:
                tip = f"{name}, {labels[i]}: {format_number(v, percent=percent)}"
                body.append(
                    f'<circle class="pt" cx="{xs[i]:.1f}" cy="{f.y(v):.1f}" r="{radius}" '
                    f'fill="{color}"><title>{_e(tip)}</title></circle>'
                )
    if len(cols) > 1 or band is not None:
        body += _legend(f, legend)
    if not has_data:
        body.append(_no_data(f))
    span = f" from {labels[0]} to {labels[-1]}" if labels else ""
    desc = f"Line chart over {n} windows{span}. " + " ".join(
        _summary(name, col, labels, percent) for name, col in cols.items()
    )
    return _svg(width, height, title, desc, body)


def _no_data(f: _Frame) -> str:
    return (
        f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{(f.y0 + f.y1) / 2:.1f}" font-size="13" '
        f'text-anchor="middle" fill="currentColor" fill-opacity="0.6">no data yet</text>'
    )


def bar_chart(
    labels: Sequence[Any],
    values: Numbers,
    *,
    title: str,
    x_label: str,
    guides: Sequence[tuple[float, str]] = PSI_GUIDES,
    percent: bool = False,
    width: int = 640,
) -> str:
    """Horizontal bars, one per label (e.g. PSI per feature), with guide lines.

    With guides, a bar is green below the first, amber up to the second, red
    above it. A missing value is written ``n/a`` with no bar.

    Returns
    -------
    str
        The ``<svg>`` element; each present value is one ``<rect class="bar">``.
    """
    names = [str(v) for v in labels]
    vals = [_finite(v) for v in values]
    if len(vals) != len(names):
        raise ValueError(f"{len(vals)} values for {len(names)} labels")
    left = min(220, 24 + 7 * max((len(s) for s in names), default=4))
    height = 48 + 24 * max(len(names), 1) + 40
    f = _Frame(width, height, left=left, top=44, right=56, bottom=40)
    lo, hi, _ = _extent([vals, [g[0] for g in guides]], 0.0, None)
    has_data = any(v is not None for v in vals)
    ticks = nice_ticks(min(lo, 0.0), hi)
    lo, hi = ticks[0], ticks[-1]
    span = hi - lo

    def xpos(v: float) -> float:
        return f.x0 + (v - lo) / span * (f.x1 - f.x0)

    step = ticks[1] - ticks[0] if len(ticks) > 1 else None
    body = []
    for t in ticks:
        body.append(
            f'<line x1="{xpos(t):.1f}" x2="{xpos(t):.1f}" y1="{f.y0}" y2="{f.y1}" '
            f'stroke="currentColor" stroke-opacity="0.12"/><text x="{xpos(t):.1f}" '
            f'y="{f.y1 + 15}" font-size="11" text-anchor="middle" fill="currentColor">'
            f"{_e(format_number(t, step, percent))}</text>"
        )
    body.append(
        f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{height - 6}" font-size="11" '
        f'text-anchor="middle" fill="currentColor" fill-opacity="0.8">{_e(x_label)}</text>'
    )
    for i, (name, v) in enumerate(zip(names, vals, strict=True)):
        y = f.y0 + 4 + 24 * i
        body.append(
            f'<text x="{f.x0 - 6}" y="{y + 13}" font-size="11" text-anchor="end" '
            f'fill="currentColor">{_e(name)}</text>'
        )
        if v is None:
            body.append(
                f'<text x="{f.x0 + 4}" y="{y + 13}" font-size="11" fill="currentColor" '
                f'fill-opacity="0.6">n/a</text>'
            )
            continue
        level = sum(v > g for g, _ in guides) if guides else 0
        color = LEVEL_COLORS[min(level, 2)] if guides else PALETTE[0]
        x0, x1 = sorted((xpos(0.0), xpos(v)))
        text = format_number(v, percent=percent) if percent else f"{v:.3f}"
        body.append(
            f'<rect class="bar" x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="16" '
            f'fill="{color}"><title>{_e(name)}: {_e(text)}</title></rect>'
            f'<text x="{x1 + 4:.1f}" y="{y + 13}" font-size="11" fill="currentColor">'
            f"{_e(text)}</text>"
        )
    for value, label in guides:
        x = xpos(value)
        body.append(
            f'<line class="guide" x1="{x:.1f}" x2="{x:.1f}" y1="{f.y0 - 4}" y2="{f.y1}" '
            f'stroke="currentColor" stroke-opacity="0.55" stroke-dasharray="5 4"/>'
            f'<text x="{x + 3:.1f}" y="{f.y0 - 6}" font-size="10" fill="currentColor" '
            f'fill-opacity="0.75">{_e(label)}</text>'
        )
    if not has_data:
        body.append(_no_data(f))
    parts = [
        f"{n} {format_number(v, percent=percent) if v is not None else 'n/a'}"
        for n, v in zip(names, vals, strict=True)
    ]
    guide_text = "; guides at " + ", ".join(g[1] for g in guides) if guides else ""
    desc = f"Bar chart of {x_label}: " + ", ".join(parts) + guide_text + "."
    return _svg(width, height, title, desc, body)


def grouped_bar_chart(
    groups: Sequence[Any],
    series: Mapping[str, Numbers],
    *,
    title: str,
    y_label: str,
    x_label: str = "window (UTC)",
    errors: Mapping[str, tuple[Numbers, Numbers]] | None = None,
    percent: bool = False,
    y_range: tuple[float | None, float | None] = (0.0, None),
    width: int = 640,
    height: int = 260,
) -> str:
    """Vertical bars grouped by window, one per series (e.g. outcome rate per arm),
    with error bars from ``errors[name] = (low, high)``.

    Returns
    -------
    str
        The ``<svg>`` element; each present value is one ``<rect class="bar">``
        and each present interval one ``<path class="err">``.
    """
    labels = format_labels(list(groups))
    cols = {name: [_finite(v) for v in values] for name, values in series.items()}
    errs = {
        name: ([_finite(v) for v in lo], [_finite(v) for v in hi])
        for name, (lo, hi) in (errors or {}).items()
    }
    for name, col in cols.items():
        if len(col) != len(labels):
            raise ValueError(f"{name}: {len(col)} values for {len(labels)} groups")
    f = _Frame(width, height, left=62, top=48, right=16, bottom=44)
    extra = [c for pair in errs.values() for c in pair]
    lo, hi, _ = _extent([*cols.values(), *extra], *y_range)
    has_data = any(v is not None for col in cols.values() for v in col)
    ticks = nice_ticks(lo, hi)
    f.scale(ticks[0], ticks[-1])
    n, k = len(labels), max(len(cols), 1)
    slot = (f.x1 - f.x0) / max(n, 1)
    bar = min(28.0, slot * 0.8 / k)
    centers = [f.x0 + slot * (i + 0.5) for i in range(n)]
    body = _y_axis(f, ticks, y_label, percent) + _x_axis(f, centers, labels, x_label)
    base = f.y(max(f.lo, 0.0))
    legend = []
    for j, (name, col) in enumerate(cols.items()):
        color = PALETTE[j % len(PALETTE)]
        legend.append((name, color, "bar"))
        lows, highs = errs.get(name, ([], []))
        for i, v in enumerate(col):
            if v is None:
                continue
            x = centers[i] - bar * k / 2 + bar * j
            top, bottom = sorted((f.y(v), base))
            tip = f"{name}, {labels[i]}: {format_number(v, percent=percent)}"
            body.append(
                f'<rect class="bar" x="{x + 1:.1f}" y="{top:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{max(bottom - top, 0.5):.1f}" fill="{color}" fill-opacity="0.85">'
                f"<title>{_e(tip)}</title></rect>"
            )
            e_lo = lows[i] if i < len(lows) else None
            e_hi = highs[i] if i < len(highs) else None
            if e_lo is not None and e_hi is not None:
                cx, y_lo, y_hi = x + bar / 2, f.y(e_lo), f.y(e_hi)
                w = min(4.0, bar / 3)
                body.append(
                    f'<path class="err" d="M{cx:.1f},{y_lo:.1f}V{y_hi:.1f}'
                    f"M{cx - w:.1f},{y_lo:.1f}H{cx + w:.1f}M{cx - w:.1f},{y_hi:.1f}H{cx + w:.1f}"
                    f'" stroke="currentColor" stroke-width="1.2" fill="none"/>'
                )
    body += _legend(f, legend)
    if not has_data:
        body.append(_no_data(f))
    span = f" from {labels[0]} to {labels[-1]}" if labels else ""
    desc = f"Grouped bar chart over {n} groups{span}"
    desc += ", with 95% intervals. " if errs else ". "
    desc += " ".join(_summary(name, col, labels, percent) for name, col in cols.items())
    return _svg(width, height, title, desc, body)
