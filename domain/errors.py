"""Domain errors: what can go wrong with a request before any storage is touched."""

__all__ = [
    "DomainError",
    "EventIdReusedError",
    "FactInFutureError",
    "RecordErasedError",
    "RecordNotFoundError",
]


class DomainError(Exception):
    """Raised for any refusal the domain makes; subclasses say which."""


class FactInFutureError(DomainError):
    """Raised when ``occurred_at`` lies further in the future than the clock skew allows."""

    def __init__(self, index: int | None, skew_seconds: float) -> None:
        self.index = index
        self.skew_seconds = skew_seconds
        super().__init__(f"occurred_at is more than {skew_seconds:g} s in the future")


class EventIdReusedError(DomainError):
    """Raised when an ``event_id`` already stored is posted again with different content."""

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event_id {event_id} was already used for a different event")


class RecordNotFoundError(DomainError):
    """Raised when a record has no events in the caller's tenant."""


class RecordErasedError(DomainError):
    """Raised when a fact is posted for a record whose key was destroyed (crypto-shredded)."""
