"""Charts as inline SVG, drawn on the server: no script, no library, no colour-only meaning.

Every bar carries its label and its count as text; the stacked chart tells its series apart by
pattern as well as by shade, names each segment in a tooltip, and every chart comes with its
numbers as a table for screen readers and for print.
"""

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["bars", "stacked"]

_ROW = 26
_LABEL = 190
_WIDTH = 640
_SHADES = ["#1d4e89", "#b3541e", "#2f6b3a", "#6b3a7d", "#7a6a14", "#2a6f75", "#8a2d3b", "#444"]
_PATTERNS = ["solid", "stripes", "dots", "cross", "hlines", "vlines", "grid", "solid"]


def _built(svg: str) -> Markup:
    # Every text in it went through escape() on the way in; only numbers and our own
    # constants are interpolated unescaped.
    return Markup(svg)  # noqa: S704


def _nothing(title: str) -> Markup:
    return Markup('<p class="empty">{}: nothing yet.</p>').format(title)


def _defs() -> str:
    parts = []
    for index, (shade, kind) in enumerate(zip(_SHADES, _PATTERNS, strict=True)):
        marks = {
            "solid": "",
            "stripes": '<path d="M0 8L8 0" stroke="#fff" stroke-width="2"/>',
            "dots": '<circle cx="4" cy="4" r="1.6" fill="#fff"/>',
            "cross": '<path d="M0 0L8 8M8 0L0 8" stroke="#fff" stroke-width="1.5"/>',
            "hlines": '<path d="M0 4H8" stroke="#fff" stroke-width="2"/>',
            "vlines": '<path d="M4 0V8" stroke="#fff" stroke-width="2"/>',
            "grid": '<path d="M0 4H8M4 0V8" stroke="#fff" stroke-width="1"/>',
        }[kind]
        parts.append(
            f'<pattern id="p{index}" width="8" height="8" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="8" fill="{shade}"/>{marks}</pattern>'
        )
    return "<defs>" + "".join(parts) + "</defs>"


def _table(caption: str, head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    header = "".join(f'<th scope="col">{escape(h)}</th>' for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return (
        f'<details class="chart-data"><summary>{escape(caption)}: the numbers</summary>'
        f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _at_most(series: Mapping[str, Mapping[str, int]], kinds: int) -> dict[str, dict[str, int]]:
    """The largest series, the rest added up as "other", so that every count is still drawn."""
    if len(series) <= kinds:
        return {name: dict(counts) for name, counts in series.items()}
    ranked = sorted(series, key=lambda name: (-sum(series[name].values()), name))
    kept = {name: dict(series[name]) for name in ranked[: kinds - 1]}
    other: dict[str, int] = {}
    for name in ranked[kinds - 1 :]:
        for column, count in series[name].items():
            other[column] = other.get(column, 0) + count
    return kept | {"other": other}


def bars(chart_id: str, title: str, rows: Sequence[tuple[str, int]]) -> Markup:
    """A horizontal bar chart of labelled counts."""
    if not rows:
        return _nothing(title)
    top = max(count for _, count in rows) or 1
    span = _WIDTH - _LABEL - 60
    height = _ROW * len(rows) + 8
    shapes = []
    for index, (label, count) in enumerate(rows):
        y = index * _ROW + 4
        width = max(2, round(span * count / top))
        shapes.append(
            f'<text x="{_LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{_LABEL}" y="{y + 3}" width="{width}" height="{_ROW - 8}" '
            f'fill="{_SHADES[0]}">'
            f"<title>{escape(label)}: {count}</title></rect>"
            f'<text x="{_LABEL + width + 6}" y="{y + 16}">{count}</text>'
        )
    svg = (
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-t" viewBox="0 0 {_WIDTH} '
        f'{height}" width="100%"><title id="{chart_id}-t">{escape(title)}</title>'
        + "".join(shapes)
        + "</svg>"
    )
    return _built(svg + _table(title, ["", "count"], rows))


def stacked(
    chart_id: str, title: str, columns: Sequence[str], series: Mapping[str, Mapping[str, int]]
) -> Markup:
    """One horizontal stacked bar per column (e.g. a month), a segment per series (e.g. a legal
    basis), told apart by pattern; a legend names the patterns."""
    series = _at_most(series, len(_SHADES))
    names = sorted(series)
    if not columns or not names:
        return _nothing(title)
    totals = {c: sum(series[n].get(c, 0) for n in names) for c in columns}
    top = max(totals.values()) or 1
    span = _WIDTH - _LABEL - 60
    legend_rows = (len(names) + 2) // 3
    height = _ROW * len(columns) + 24 * legend_rows + 16
    shapes = []
    for index, column in enumerate(columns):
        y = index * _ROW + 4
        x = float(_LABEL)
        shapes.append(
            f'<text x="{_LABEL - 8}" y="{y + 16}" text-anchor="end">{escape(column)}</text>'
        )
        for number, name in enumerate(names):
            count = series[name].get(column, 0)
            if not count:
                continue
            width = span * count / top
            shapes.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{_ROW - 8}" '
                f'fill="url(#{chart_id}p{number})" stroke="#fff" stroke-width="1">'
                f"<title>{escape(column)}, {escape(name)}: {count}</title></rect>"
            )
            x += width
        shapes.append(f'<text x="{x + 6:.1f}" y="{y + 16}">{totals[column]}</text>')
    base = _ROW * len(columns) + 12
    for number, name in enumerate(names):
        lx = 10 + (number % 3) * 210
        ly = base + (number // 3) * 24
        shapes.append(
            f'<rect x="{lx}" y="{ly}" width="16" height="16" fill="url(#{chart_id}p{number})"/>'
            f'<text x="{lx + 22}" y="{ly + 13}">{escape(name)}</text>'
        )
    svg = (
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-t" viewBox="0 0 {_WIDTH} '
        f'{height}" width="100%"><title id="{chart_id}-t">{escape(title)}</title>'
        + _defs().replace('id="p', f'id="{chart_id}p')
        + "".join(shapes)
        + "</svg>"
    )
    rows = [[c, *(series[n].get(c, 0) for n in names), totals[c]] for c in columns]
    return _built(svg + _table(title, ["", *names, "total"], rows))
