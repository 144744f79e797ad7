"""The baseline endpoint: the same route shape and body validation as the real ingest, nothing
stored. Served by uvicorn with the same workers and protocol as ``disclosure-audit serve``.

    uvicorn bench.bare:app --workers 2
"""

from typing import Annotated

from fastapi import Body, FastAPI, Path

from domain import facts
from service.schemas import BatchRequest, IngestFact

__all__ = ["app"]

app = FastAPI()


@app.post("/v1/records/{record_ref}/events", status_code=201)
def post_event(
    record_ref: Annotated[facts.RecordRef, Path()], fact: Annotated[IngestFact, Body()]
) -> dict[str, str]:
    """Validate one fact as the service does and answer a receipt-sized body."""
    return {"event_id": str(fact.event_id), "record_ref": record_ref}


@app.get("/ping")
def ping() -> dict[str, str]:
    """The smallest GET: the baseline of the console's page timings."""
    return {"ok": "yes"}


@app.post("/v1/events:batch", status_code=201)
def post_batch(batch: BatchRequest) -> dict[str, int]:
    """Validate a batch as the service does."""
    return {"receipts": len(batch.events)}
