"""The composition root: builds the store, keyring and key store from settings, once."""

from dataclasses import dataclass

from domain.policy.rulesets import BUILTIN_RULES, Rulebook
from service.application.ingest import Ingest
from service.auth import ApiKeyStore
from service.integrity.log import TenantLog
from service.integrity.signing import LogKeyring
from service.projector import Projector
from service.reads import ReadLog
from service.schema import create_service_tables
from service.settings import Settings
from service.storage.app import AuditLog
from service.storage.crypto import MasterKey
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

    def shred_record(self, tenant_id: str, record_ref: str) -> bool:
        """Crypto-shred a record: destroy its key and purge its read-model rows."""
        destroyed = self.audit.shred_record(tenant_id, record_ref)
        self.ingest.forget(self.audit.record_id(tenant_id, record_ref))
        with self.audit.db.transaction() as cursor:
            self.projector.model.purge(cursor, self.audit.record_id(tenant_id, record_ref))
        return destroyed

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
    ingest = Ingest(audit, write_attempts=settings.write_attempts)
    log = TenantLog(
        audit.db,
        audit.keyring,
        LogKeyring(settings.log_keys_path, settings.log_origin, may_create=create),
        settings.log_origin,
    )
    projector = Projector(audit, rulebook, settings.projection_page_size, saved=ingest.saved)
    projector.prepare()
    return Services(
        settings=settings,
        audit=audit,
        keys=ApiKeyStore(audit.db),
        log=log,
        projector=projector,
        ingest=ingest,
        reads=ReadLog(audit.db, master),
    )
