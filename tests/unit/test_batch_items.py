"""A batch item's fact is the fact its body describes, whatever the body: ``fact_of`` builds it
from the item's validated values, and must give what validating the body alone gives."""

from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from domain import facts
from service.schemas import INGEST_FACT_TYPES, BatchRequest, fact_of
from tests.fact_strategies import candidate_facts, record_refs
from tests.factories import example


@settings(max_examples=300, deadline=None)
@given(body=candidate_facts(INGEST_FACT_TYPES), record_ref=record_refs)
def test_the_fact_of_a_batch_item_equals_the_fact_validated_alone(
    body: dict[str, Any], record_ref: str
) -> None:
    try:
        alone = facts.FACT_TYPES_BY_NAME[body["type"]].model_validate(body)
    except ValidationError:
        with pytest.raises(ValidationError):  # the batch refuses what the fact refuses
            BatchRequest.model_validate({"events": [{**body, "record_ref": record_ref}]})
        return
    item = BatchRequest.model_validate({"events": [{**body, "record_ref": record_ref}]}).events[0]
    fact = fact_of(item)
    assert type(fact) is type(alone)
    assert fact == alone
    assert fact.model_fields_set == alone.model_fields_set
    for mode in ("json", "python"):
        assert fact.model_dump(mode=mode) == alone.model_dump(mode=mode)
        assert fact.model_dump(mode=mode, exclude_none=True) == alone.model_dump(
            mode=mode, exclude_none=True
        )
    assert fact.model_dump_json() == alone.model_dump_json()


@pytest.mark.parametrize("model", INGEST_FACT_TYPES, ids=lambda m: m.__name__)
def test_only_batch_items_are_taken(model: type[facts.FactBase]) -> None:
    with pytest.raises(TypeError, match="not a batch item"):
        fact_of(model.model_validate(example(model.__name__)))
