"""Reads of one client record's own stream (API.md "Queries")."""

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from domain import facts
from service.auth import Principal, Role
from service.deps import ServicesDep, audited
from service.schemas import Problem, TimelineItem, TimelinePage

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["records"])

Reader = Annotated[Principal, Depends(audited(Role.COMPLIANCE))]


def _sort_key(item: TimelineItem) -> tuple[datetime, int]:
    # Redacted events lost their occurred_at with their key; they sort by when we stored them.
    return (item.occurred_at or item.recorded_at, item.position)


def _decode_cursor(cursor: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(value["after"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise HTTPException(400, "The cursor is not one this API returned.") from None


@router.get(
    "/records/{record_ref}/timeline",
    operation_id="get_record_timeline",
    response_model=TimelinePage,
    responses={
        400: {"model": Problem},
        401: {"model": Problem},
        403: {"model": Problem},
        404: {"model": Problem, "description": "No such record in your tenant"},
    },
    summary="Every event of a record, in occurred_at order",
)
def get_timeline(
    record_ref: Annotated[facts.RecordRef, Path()],
    principal: Reader,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TimelinePage:
    """The record's facts; events of a crypto-shredded record come back redacted."""
    stored = services.audit.read_record(principal.tenant_id, record_ref)
    items = sorted(
        (TimelineItem.of(s) for s in stored if s.event.originator_version > 1), key=_sort_key
    )
    start = _decode_cursor(cursor) if cursor else 0
    page = items[start : start + limit]
    end = start + len(page)
    next_cursor = (
        base64.urlsafe_b64encode(json.dumps({"after": end}).encode()).decode()
        if end < len(items)
        else None
    )
    return TimelinePage(items=page, next_cursor=next_cursor)
