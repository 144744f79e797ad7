"""Hypothesis strategies for facts, derived from the request models' own JSON schema.

Every object shape, required and optional field, enum, constant, length and ``pattern`` comes
from ``model_json_schema()``; only the three string formats are drawn here. A generic
``date-time`` generator draws years 0..9999 and offsets to +-23:59, which the models refuse,
so almost every drawn fact would be filtered out; these draw across the whole accepted range
(and its edges) instead. Candidates are still filtered through the models: a test keeps only
what the API would accept.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from pydantic import TypeAdapter

from domain import facts

__all__ = ["candidate_facts", "json_values", "moments", "record_refs"]

_FIRST = datetime(facts.FIRST_YEAR, 1, 1, tzinfo=UTC) + facts.MAX_OFFSET
_LAST = datetime(facts.LAST_YEAR, 12, 31, 23, 59, 59, tzinfo=UTC) - facts.MAX_OFFSET

_offsets = st.one_of(
    st.sampled_from([timedelta(0), facts.MAX_OFFSET, -facts.MAX_OFFSET, timedelta(hours=-5)]),
    st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes)),
)


def _offset_text(offset: timedelta, utc_letter: str) -> str:
    if offset == timedelta(0) and utc_letter:
        return utc_letter
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@st.composite
def moments(draw: st.DrawFn, until: datetime = _LAST) -> str:
    """RFC 3339 text of a moment between 1900 and ``until``, in any accepted spelling."""
    instant = draw(st.datetimes(_FIRST.replace(tzinfo=None), until.replace(tzinfo=None)))
    offset = draw(_offsets)
    local = instant + offset
    separator = draw(st.sampled_from("Tt"))
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True)))
    zone = _offset_text(offset, draw(st.sampled_from(["Z", "z", ""])))
    return f"{local.date().isoformat()}{separator}{local:%H:%M:%S}{fraction}{zone}"


def _formats(prop: str | None) -> dict[str, st.SearchStrategy[str]]:
    # occurred_at may lie at most 5 minutes ahead (domain.record.CLOCK_SKEW): draw only the past.
    until = datetime.now(UTC) - timedelta(hours=1) if prop == "occurred_at" else _LAST
    return {
        "date-time": moments(until),
        "date": st.dates(date(facts.FIRST_YEAR, 1, 1), date(facts.LAST_YEAR, 12, 31)).map(
            date.isoformat
        ),
        "uuid": st.uuids().map(str),
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=8,
)  # fmt: skip
"""Any JSON value (the schema ``{}``), big integers included: the models refuse some."""


def _strategy(  # noqa: PLR0911 - one branch per JSON-schema keyword
    schema: dict[str, Any], defs: dict[str, Any], prop: str | None
) -> Any:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: _strategy(defs[name], defs, prop))
    if "anyOf" in schema:
        return st.one_of([_strategy(option, defs, prop) for option in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return json_values
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return _string(schema, prop)
    if kind == "array":
        return st.lists(
            _strategy(schema["items"], defs, prop),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    assert kind == "object", schema
    if "properties" not in schema:
        return st.dictionaries(
            st.text(max_size=12),
            _strategy(schema.get("additionalProperties", {}), defs, prop),
            min_size=schema.get("minProperties", 0),
            max_size=min(schema.get("maxProperties", 4), 4),
        )
    required = set(schema.get("required", []))
    fields = {name: _strategy(sub, defs, name) for name, sub in schema["properties"].items()}
    return st.fixed_dictionaries(
        {name: s for name, s in fields.items() if name in required},
        optional={name: s for name, s in fields.items() if name not in required},
    )


def _string(schema: dict[str, Any], prop: str | None) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 60)
    if "format" in schema:
        return _formats(prop)[schema["format"]]
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda text: low <= len(text) <= high
        )
    return st.text(min_size=low, max_size=min(high, 60))


def _of(schema: dict[str, Any]) -> Any:
    return _strategy(schema, schema.get("$defs", {}), None)


def candidate_facts(models: tuple[type[facts.FactBase], ...]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON bodies shaped by the models' schema; filter them with the models before use."""
    return st.one_of([_of(model.model_json_schema()) for model in models])


record_refs: st.SearchStrategy[str] = _of(TypeAdapter(facts.RecordRef).json_schema())
"""Record refs drawn from the RecordRef schema (its pattern and length)."""
