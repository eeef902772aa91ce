"""Line charts as plain text, for a terminal or a log file.

One series is drawn with Unicode braille, whose 2x4 dots per character give a smooth
line; several series each get their own marker character at one point per character,
so they stay apart without colour (colour is added on top when asked for). Points
that are not finite are left out, and the line breaks there.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: markers of the series when there are several, in order
MARKERS = "•x+o*#%@"
#: ANSI colours of the series, in order
COLORS = (34, 31, 32, 33, 35, 36, 94, 91)
_BRAILLE = 0x2800
# the bit of each dot in a braille cell, by (row, column) within the 4x2 cell
_DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]])

Series = tuple[Sequence[float], Sequence[float]]


def line_plot(series: Mapping[str, Series], width: int = 80, height: int = 15, x_label: str = "step",
              color: bool = False) -> str:
    """A chart of ``series`` (name -> (x values, y values)) as lines of text.

    Parameters
    ----------
    series : mapping of name to (x, y), each a sequence of shape (n_points,)
        Drawn in order, on shared axes; a later series covers an earlier one where they
        meet.
    width, height : int
        Of the whole chart in characters, y-axis labels included; the legend and x-axis
        take three lines more than ``height``.
    x_label : str
        Name of the x axis, shown between the ends of its range.
    color : bool
        Colour each series with ANSI escapes (for a terminal).

    Returns
    -------
    str
        The chart, lines joined by newlines, no trailing newline; a one-line note when
        there is no finite point to draw.
    """
    clean = {name: _finite(x, y) for name, (x, y) in series.items()}
    drawn = {name: xy for name, xy in clean.items() if xy[0].size}
    if not drawn:
        names = ", ".join(series) or "no series"
        return f"(nothing to plot: {names} has no finite values)"
    xs = np.concatenate([x for x, _ in drawn.values()])
    ys = np.concatenate([y for _, y in drawn.values()])
    x_lo, x_hi = _span(float(xs.min()), float(xs.max()))
    y_lo, y_hi = _span(float(ys.min()), float(ys.max()))
    single = len(series) == 1
    sub_c, sub_r = (2, 4) if single else (1, 1)
    rows = max(3, height)
    if ys.max() > ys.min():
        labels = {0: _number(float(ys.max())), rows - 1: _number(float(ys.min()))}
    else:  # a constant: one label, on the row of the line
        labels = {rows // 2: _number(float(ys.min()))}
    label_w = max(len(s) for s in labels.values())
    cols = max(8, width - label_w - 2)
    owner = np.full((rows, cols), -1)
    dots = np.zeros((rows, cols), dtype=np.int64)
    for i, name in enumerate(series):
        if name not in drawn:
            continue
        x, y = drawn[name]
        c = np.rint((x - x_lo) / (x_hi - x_lo) * (cols * sub_c - 1)).astype(np.int64)
        r = np.rint((y_hi - y) / (y_hi - y_lo) * (rows * sub_r - 1)).astype(np.int64)
        c, r = _segments(c, r, _breaks(series[name]))
        owner[r // sub_r, c // sub_c] = i
        if single:
            np.bitwise_or.at(dots, (r // sub_r, c // sub_c), _DOT_BITS[r % sub_r, c % sub_c])

    lines = []
    for row in range(rows):
        label = labels.get(row, "")
        tick = "┤" if label else "│"
        cells = [_cell(owner[row, col], dots[row, col], single, color) for col in range(cols)]
        lines.append(f"{label:>{label_w}} {tick}" + "".join(cells).rstrip())
    lines.append(" " * label_w + " └" + "─" * cols)
    left, right = _number(float(xs.min())), _number(float(xs.max()))
    room = cols - len(left) - len(right)
    middle = x_label.center(room) if room >= len(x_label) + 2 else " " * max(1, room)
    lines.append(" " * (label_w + 2) + left + middle + right)
    entries = []
    for i, name in enumerate(series):
        mark = "⠤⠤" if single else MARKERS[i % len(MARKERS)]
        missing = "" if name in drawn else " (no finite values)"
        entries.append((_paint(mark, i, color) + f" {name}{missing}", len(mark) + 1 + len(name) + len(missing)))
    # the legend wraps rather than run past the chart's width
    line, used = "", 0
    for text, n in entries:
        if used and label_w + 2 + used + 3 + n > width:
            lines.append(" " * (label_w + 2) + line)
            line, used = "", 0
        line, used = (line + "   " + text, used + 3 + n) if used else (text, n)
    lines.append(" " * (label_w + 2) + line)
    return "\n".join(lines)


def _finite(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y of a series must be 1-D and equally long, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _breaks(xy: Series) -> np.ndarray:
    """Whether each finite point follows a non-finite one (the line is not drawn across
    a gap), as a boolean array over the finite points."""
    x, y = np.asarray(xy[0], dtype=np.float64), np.asarray(xy[1], dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    after_gap = np.r_[False, ~ok[:-1]] if ok.size else ok
    return after_gap[ok]


def _segments(c: np.ndarray, r: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid cells on straight lines between consecutive points (the points included)."""
    out_c, out_r = [c], [r]
    for k in range(1, c.size):
        if breaks[k]:
            continue
        n = int(max(abs(c[k] - c[k - 1]), abs(r[k] - r[k - 1])))
        if n > 1:
            t = np.linspace(0.0, 1.0, n + 1)[1:-1]
            out_c.append(np.rint(c[k - 1] + t * (c[k] - c[k - 1])).astype(np.int64))
            out_r.append(np.rint(r[k - 1] + t * (r[k] - r[k - 1])).astype(np.int64))
    return np.concatenate(out_c), np.concatenate(out_r)


def _cell(owner: int, dots: int, single: bool, color: bool) -> str:
    if owner < 0:
        return " "
    char = chr(_BRAILLE + int(dots)) if single else MARKERS[owner % len(MARKERS)]
    return _paint(char, owner, color)


def _paint(text: str, i: int, color: bool) -> str:
    return f"\033[{COLORS[i % len(COLORS)]}m{text}\033[0m" if color else text


def _span(lo: float, hi: float) -> tuple[float, float]:
    # a constant series sits in the middle of a small range around its value
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def _number(v: float) -> str:
    if v == 0:
        return "0"
    if math.isfinite(v) and v == int(v) and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.4g}"
