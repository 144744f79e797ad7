"""What read models need from the outside, as protocols: the service layer provides them."""

from collections.abc import Sequence
from typing import Any, Literal, Protocol
from uuid import UUID

from domain import facts

__all__ = ["Cursor", "History", "Sealer"]


class Cursor(Protocol):
    """A cursor in an open transaction; statements use ``%s`` placeholders."""

    dialect: Literal["sqlite", "postgres"]

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        """Run one statement."""

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one statement per row."""

    def fetchone(self, sql: str, params: Sequence[object] = ()) -> dict[str, Any] | None:
        """Run a query; its first row."""

    def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        """Run a query; every row."""


class Sealer(Protocol):
    """Seals personal fields of read-model rows with their record's key."""

    def seal(self, record: UUID, data: bytes) -> bytes:
        """Encrypt for this record."""

    def open(self, record: UUID, data: bytes) -> bytes | None:
        """Decrypt, or None if the record was crypto-shredded."""

    def blind(self, value: str) -> bytes:
        """A keyed digest of a value, to filter on it without storing it."""


class History(Protocol):
    """A record's facts as stored, up to a version."""

    def facts(
        self, record: UUID, up_to_version: int, after: int = 0
    ) -> list[tuple[int, facts.FactBase]]:
        """The record's facts with their versions in (``after``, ``up_to_version``], in order."""
