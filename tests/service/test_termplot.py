"""trainyard.termplot: plain-text line charts."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from trainyard.termplot import MARKERS, line_plot

BRAILLE = re.compile("[\u2801-\u28ff]")


def _grid(chart: str) -> list[str]:
    """The plot area: the rows between the y axis and the x axis, without labels."""
    rows = []
    for line in chart.splitlines():
        if "└" in line:
            break
        rows.append(re.split("[┤│]", line, maxsplit=1)[1])
    width = max(len(r) for r in rows)
    return [r.ljust(width) for r in rows]


def _marked(grid: list[str], char: str | None = None) -> set[tuple[int, int]]:
    return {(r, c) for r, row in enumerate(grid) for c, ch in enumerate(row)
            if (ch == char if char else ch != " ")}


def test_a_rising_series_goes_from_bottom_left_to_top_right():
    chart = line_plot({"acc": (np.arange(50), np.linspace(0.1, 0.9, 50))}, width=60, height=10)
    grid = _grid(chart)
    assert len(grid) == 10
    marked = _marked(grid)
    assert (len(grid) - 1, 0) in marked and (0, len(grid[0]) - 1) in marked
    assert (0, 0) not in marked and (len(grid) - 1, len(grid[0]) - 1) not in marked
    # each column's marks sit no lower than the column before's
    tops = [min(r for r, c in marked if c == col) for col in range(len(grid[0]))]
    assert tops == sorted(tops, reverse=True)
    assert all(BRAILLE.fullmatch(ch) for r, c in marked for ch in grid[r][c])


def test_labels_show_min_and_max_and_the_x_range():
    chart = line_plot({"loss": ([10, 20, 30, 40], [2.5, 1.25, 0.75, 0.5])}, width=50, height=6)
    lines = chart.splitlines()
    assert lines[0].lstrip().startswith("2.5 ┤") and lines[5].lstrip().startswith("0.5 ┤")
    x_axis = lines[7].split()
    assert x_axis == ["10", "step", "40"]
    assert all(len(line) <= 50 for line in lines)


def test_two_series_get_distinct_markers_and_both_appear_in_the_legend():
    x = np.arange(30)
    chart = line_plot({"loss": (x, np.exp(-x / 10)), "val_loss": (x, 1 + 0 * x)}, width=50, height=8)
    legend = chart.splitlines()[-1]
    assert f"{MARKERS[0]} loss" in legend and f"{MARKERS[1]} val_loss" in legend
    grid = _grid(chart)
    # the constant val_loss is the top of the range: a full row of its marker
    assert grid[0].strip() == MARKERS[1] * len(grid[0].strip()) and len(grid[0].strip()) > 40
    assert _marked(grid, MARKERS[0]), "the first series is drawn too"


def test_a_constant_series_is_one_row_in_the_middle_with_its_value():
    chart = line_plot({"lr": ([1, 2, 3, 4], [0.01] * 4)}, width=40, height=7)
    grid = _grid(chart)
    assert [r for r, row in enumerate(grid) if row.strip()] == [3]
    labelled = [line for line in chart.splitlines() if "┤" in line]
    assert len(labelled) == 1 and labelled[0].lstrip().startswith("0.01 ┤")


def test_non_finite_points_are_left_out_and_break_the_line():
    y = [0.0, 1.0, math.nan, 3.0, 4.0, math.inf]
    chart = line_plot({"s": (range(6), y)}, width=40, height=8)
    lines = chart.splitlines()
    assert lines[0].lstrip().startswith("4 ┤") and lines[7].lstrip().startswith("0 ┤")
    assert lines[9].split() == ["0", "step", "4"], "the infinite last point leaves the x range"
    grid = _grid(chart)
    # nothing is drawn between x=1 and x=3 (the columns around x=2)
    mid = len(grid[0]) // 2
    assert not any(row[mid].strip() for row in grid)


def test_nothing_finite_says_so_instead_of_drawing():
    assert line_plot({"a": ([1, 2], [math.nan, math.nan])}) == "(nothing to plot: a has no finite values)"
    chart = line_plot({"a": ([1, 2], [math.nan, math.nan]), "b": ([1, 2], [1, 2])}, width=40, height=5)
    assert "a (no finite values)" in chart.splitlines()[-1] and "b" in chart.splitlines()[-1]


def test_a_long_legend_wraps_within_the_width():
    series = {f"series_number_{i}": ([0, 1], [i, i + 1]) for i in range(6)}
    chart = line_plot(series, width=60, height=5)
    assert all(len(line) <= 60 for line in chart.splitlines())
    legend = "\n".join(chart.splitlines()[7:])
    assert all(f"{MARKERS[i]} series_number_{i}" in legend for i in range(6))


def test_colour_only_when_asked():
    plain = line_plot({"a": ([1, 2], [1, 2])}, width=30, height=4)
    coloured = line_plot({"a": ([1, 2], [1, 2])}, width=30, height=4, color=True)
    assert "\033[" not in plain and "\033[34m" in coloured
    assert re.sub("\033\\[[0-9]+m", "", coloured) == plain


def test_mismatched_x_and_y_are_refused():
    with pytest.raises(ValueError, match="equally long"):
        line_plot({"a": ([1, 2, 3], [1, 2])})
