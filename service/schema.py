"""Every table the service owns, and the one place they are created.

Each definition sits beside the only module that reads and writes its table (named below), so
that SQL and schema change together; this module lists them all and creates them, once, when
the composition root opens a store (``service/container.py``). The event store's own tables
belong to the eventsourcing library (created by its recorders), and the read models' tables to
``projections/schema.py``, which the projector versions and rebuilds.
"""

from service.auth import API_KEY_TABLES
from service.console.sessions import SESSION_TABLES
from service.integrity.jobs import EXPORT_TABLES
from service.integrity.log import CHECKPOINT_TABLES
from service.reads import READ_TABLES
from service.storage.keyring import DESTRUCTION_TABLES, KEYRING_COLUMNS, KEYRING_TABLES
from service.storage.service_keys import SERVICE_KEY_TABLES
from service.storage.sql import Database, Dialect
from service.storage.tenant_log import TENANT_LOG_TABLES

__all__ = ["SERVICE_COLUMNS", "SERVICE_TABLES", "create_service_tables"]

SERVICE_TABLES: dict[str, dict[Dialect, list[str]]] = {
    "da_record_keys (service/storage/keyring.py)": KEYRING_TABLES,
    "da_key_destructions (service/storage/keyring.py)": DESTRUCTION_TABLES,
    "da_tenant_log (service/storage/tenant_log.py)": TENANT_LOG_TABLES,
    "da_checkpoints (service/integrity/log.py)": CHECKPOINT_TABLES,
    "da_exports (service/integrity/jobs.py)": EXPORT_TABLES,
    "da_api_keys (service/auth.py)": API_KEY_TABLES,
    "da_audit_reads (service/reads.py)": READ_TABLES,
    "da_console_sessions (service/console/sessions.py)": SESSION_TABLES,
    "da_service_keys, da_master_rotations (service/storage/service_keys.py)": SERVICE_KEY_TABLES,
}

SERVICE_COLUMNS: list[tuple[str, str, str]] = [
    # (table, column, definition): columns added to tables that earlier versions created.
    *KEYRING_COLUMNS,
]


def create_service_tables(db: Database) -> None:
    """Create every table (and index) the service owns that does not exist yet."""
    for statements in SERVICE_TABLES.values():
        db.create_tables(statements)
    for table, column, definition in SERVICE_COLUMNS:
        db.add_column(table, column, definition)
