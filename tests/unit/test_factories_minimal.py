"""The example bodies every policy and HTTP test starts from are what a clinical system must
send, nothing more: a verdict that needs an optional block must say so in its own test."""

import pytest

from domain import facts
from tests.factories import EXAMPLES, example


@pytest.mark.parametrize("type_", sorted(EXAMPLES))
def test_each_example_holds_only_required_fields(type_: str) -> None:
    model = facts.FACT_TYPES_BY_NAME[type_]
    body = example(type_)
    optional = sorted(k for k in body if not model.model_fields[k].is_required())
    assert optional == [], f"{type_}: optional fields in the minimal body: {optional}"
    assert all(field.is_required() for field in facts.Actor.model_fields.values())
    model.model_validate(body)  # and they are valid as they stand
