"""The console's charts: every count is drawn and written, nothing told by colour alone."""

import re

from service.console.charts import bars, stacked


def test_a_bar_chart_writes_each_label_and_count_and_tables_them() -> None:
    svg = str(bars("roles", "Accesses by role", [("billing", 12), ("front desk", 3)]))
    assert 'role="img"' in svg
    assert 'aria-labelledby="roles-t"' in svg
    assert '<title id="roles-t">Accesses by role</title>' in svg
    assert ">billing</text>" in svg
    assert ">12</text>" in svg
    assert "<td>front desk</td><td>3</td>" in svg, "the numbers, as a table"


def test_labels_are_escaped() -> None:
    svg = str(bars("x", "<b>t</b>", [("<script>alert(1)</script>", 1)]))
    assert "<script>" not in svg
    assert "<b>" not in svg
    assert "&lt;script&gt;" in svg


def test_an_empty_chart_says_so() -> None:
    assert "nothing yet" in str(bars("x", "Open findings by rule", []))
    assert "nothing yet" in str(stacked("y", "Per month", ["2026-01"], {}))


def test_stacked_series_differ_by_pattern_and_many_series_still_add_up() -> None:
    months = ["2026-01", "2026-02"]
    series = {f"R-{n}": {"2026-01": n, "2026-02": 1} for n in range(1, 13)}  # 12 rules
    svg = str(stacked("rules", "Findings per month by rule", months, series))
    fills = set(re.findall(r'fill="url\(#(rules-?p\d+)\)"', svg))
    assert len(fills) == 8, "eight kinds, each its own pattern"
    assert ">other</text>" in svg, "the smallest series are added up, not dropped"
    total_january = sum(range(1, 13))
    assert f">{total_january}</text>" in svg
    assert "<td>2026-01</td>" in svg
    row = re.search(r"<tr><td>2026-01</td>(.*?)</tr>", svg)
    assert row is not None
    cells = [int(c) for c in re.findall(r"<td>(\d+)</td>", row.group(1))]
    assert cells[-1] == total_january
    assert sum(cells[:-1]) == total_january
