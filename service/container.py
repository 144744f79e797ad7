"""The composition root: builds the store, keyring and key store from settings, once."""

from dataclasses import dataclass, field
from uuid import UUID

from domain.policy.rulesets import BUILTIN_RULES, Rulebook
from service.application.ingest import Ingest
from service.application.lifecycle import Lifecycle
from service.auth import ApiKeyStore
from service.integrity.jobs import BundleStore, ExportJobs
from service.integrity.log import TenantLog
from service.integrity.signing import LogKeyring
from service.projector import Projector
from service.reads import ReadLog, stand_in
from service.schema import create_service_tables
from service.settings import Settings
from service.storage.app import AuditLog
from service.storage.crypto import MasterKey, MasterKeyError
from service.storage.presence import StoreMissingError, find_store_problem

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Everything a request handler or a CLI command needs."""

    settings: Settings
    audit: AuditLog
    ingest: Ingest
    keys: ApiKeyStore
    log: TenantLog
    projector: Projector
    reads: ReadLog
    lifecycle: Lifecycle = field(init=False)

    def __post_init__(self) -> None:
        self.lifecycle = Lifecycle(self.audit, self.ingest, self.purge_record)
        # Destructions by other processes (seen by RecordKeyring.sync) clear this one's memory.
        self.audit.keyring.on_destroyed(lambda ids: self.ingest.forget(*ids))
        self.audit.keyring.on_destroyed(self._forget_projected)
        self.reads.destroyed = self._destroyed
        self.audit.sync_keys()

    def _destroyed(self, tenant_id: str, record_ref: str) -> UUID | None:
        rid = self.audit.record_id(tenant_id, record_ref)
        return rid if self.audit.keyring.destroyed(rid) else None

    def _forget_projected(self, records: list[UUID]) -> None:
        for record in records:
            self.projector.model.forget(record)

    def shred_record(self, tenant_id: str, record_ref: str) -> bool:
        """Crypto-shred a record without its certificate (tests and the lifecycle's last
        steps): destroy its key and purge every plaintext copy."""
        rid = self.audit.record_id(tenant_id, record_ref)
        self.ingest.forget(rid)
        destroyed = self.audit.shred(rid)
        self.purge_record(tenant_id, record_ref, rid)
        return destroyed

    def purge_record(self, tenant_id: str, record_ref: str, rid: UUID) -> None:
        """Remove what a destroyed record left outside its (now unreadable) events: read-model
        rows, the self-audit's mentions of its ref, and every export bundle of the tenant."""
        with self.audit.db.transaction() as cursor:
            self.projector.model.purge(cursor, rid)
        self.reads.redact(tenant_id, record_ref, stand_in(rid))
        withdrawn = ExportJobs(self.audit.db).withdraw(
            tenant_id,
            "Deleted: a record it may hold was destroyed at the end of its retention; "
            "start a new export.",
        )
        bundles = BundleStore(self.settings.exports_path)
        for export_id in withdrawn:
            bundles.discard(export_id)

    def close(self) -> None:
        """Answer what is being written, then close connection pools."""
        self.ingest.close()
        self.audit.close()


def build_services(settings: Settings, *, create: bool = True) -> Services:
    """Open the store chosen by the settings (creating tables as needed).

    With ``create=False`` nothing new is started: no store, no master key, no signing key; a
    missing store raises StoreMissingError and a missing master key MasterKeyError. Tables a
    newer version adds to an existing store are still created.
    """
    if not create:
        problem = find_store_problem(settings)
        if problem is not None:
            raise StoreMissingError(problem)
    master = MasterKey.load_or_create(
        settings.master_key_path,
        create=create and (settings.create_master_key or not settings.uses_postgres),
    )
    rulebook = Rulebook.load(settings.rules_dir or BUILTIN_RULES)
    audit = AuditLog(settings.eventsourcing_env(), master, rulebook)
    create_service_tables(audit.db)
    try:
        audit.service_keys.open()  # a master key that opens no stored key fails here, clearly
    except MasterKeyError:
        audit.close()
        raise
    keys = ApiKeyStore(audit.db)
    ingest = Ingest(audit, write_attempts=settings.write_attempts, active_keys=keys.active)
    log = TenantLog(
        audit.db,
        audit.keyring,
        LogKeyring(settings.log_keys_path, settings.log_origin, may_create=create),
        settings.log_origin,
        lambda: audit.lifecycle_key,
    )
    projector = Projector(audit, rulebook, settings.projection_page_size, saved=ingest.saved)
    projector.prepare()
    return Services(
        settings=settings,
        audit=audit,
        keys=keys,
        log=log,
        projector=projector,
        ingest=ingest,
        reads=ReadLog(audit.db, audit.service_keys),
    )
