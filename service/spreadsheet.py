"""CSV cells a spreadsheet will not run: the OWASP "CSV injection" guidance, in one place.

Both CSV renderings of the 164.528 accounting (the API's ``Accept: text/csv`` and the export
bundle's ``accounting.csv``) carry names and ids a clinical system sent; a recipient named
``=HYPERLINK("http://x","click")`` must open as text, not as a live formula.
"""

from collections.abc import Iterable

__all__ = ["FORMULA_TRIGGERS", "safe_cell", "safe_row"]

FORMULA_TRIGGERS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
"""First characters that make Excel, LibreOffice or Google Sheets evaluate a cell (OWASP lists
= + - @ tab and CR; the full-width forms of = + - @ are read as formulas by some locales)."""


def safe_cell(value: object) -> object:
    """A text cell prefixed with a single quote when it would start a formula; other values
    (numbers, None) unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_TRIGGERS:
        return "'" + value
    return value


def safe_row(values: Iterable[object]) -> list[object]:
    """Every cell of a row through ``safe_cell``."""
    return [safe_cell(value) for value in values]
