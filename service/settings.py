"""Configuration from the environment (``DISCLOSURE_AUDIT_*``) and an optional ``.env`` file."""

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.vocabulary import ActorRole, DataCategory, PurposeOfUse

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob of the service; see README "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="DISCLOSURE_AUDIT_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".disclosure-audit"),
        description="Directory of the embedded SQLite store and of generated key files.",
    )
    database_url: str | None = Field(
        default=None,
        description="A postgresql://user:password@host:port/dbname URL selects PostgreSQL; "
        "unset means the SQLite file in home.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="File with the base64 master key that wraps every record key "
        "(default: home/master.key, generated on first start).",
    )
    create_master_key: bool = Field(
        default=True,
        description="Generate the master key file if it is missing. Turn off in production, "
        "where a missing key must stop the service rather than start an empty key hierarchy.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    postgres_pool_size: int = Field(default=10, ge=1, le=200)
    postgres_max_overflow: int = Field(default=10, ge=0, le=200)
    postgres_lock_timeout_seconds: int = Field(default=5, ge=1)
    write_attempts: int = Field(
        default=100,
        ge=1,
        description="How often one write is retried when concurrent writers to the same "
        "record win the race; after that the client gets 503 with Retry-After.",
    )
    log_key_dir: Path | None = Field(
        default=None,
        description="Directory of the Ed25519 keys that sign checkpoints (default: home/log-keys).",
    )
    log_origin: str = Field(
        default="disclosure-audit.local",
        pattern=r"^[A-Za-z0-9.-]+$",
        description="Origin prefix of checkpoints; a tenant's log, and the name of its "
        "signing keys, is <origin>/<tenant>.",
    )
    projections: Literal["in-process", "external"] = Field(
        default="in-process",
        description="Run the projection worker inside serve (in-process) or as the separate "
        "'disclosure-audit project' process (external, PostgreSQL).",
    )
    projection_page_size: int = Field(
        default=200, ge=1, le=10_000, description="Events applied per projection transaction."
    )
    projection_stall_seconds: float = Field(
        default=60.0,
        gt=0,
        description="/readyz fails while the oldest event not yet in the read models is older.",
    )
    read_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="How long ?min_position= waits before 503."
    )
    rules_dir: Path | None = Field(
        default=None,
        description="Directory of jurisdiction rule files (*.toml) to use instead of the "
        "built-in ones; validated at start-up.",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line with request and trace ids; text: for humans.",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL of an OpenTelemetry collector (http://collector:4318); "
        "traces and metrics go there. Unset: nothing is exported.",
    )
    otel_service_name: str = Field(
        default="disclosure-audit", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="service.name"
    )
    shutdown_grace_seconds: int = Field(
        default=20,
        ge=1,
        le=600,
        description="After SIGTERM, how long in-flight requests may take before they are cut; "
        "keep it below the orchestrator's kill timeout.",
    )

    export_retention_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 366,
        description="How long an export bundle (a plaintext copy of the audit trail) stays "
        "downloadable; then it is deleted and GET .../bundle answers 410.",
    )

    retention_sweep_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 366,
        description="How often `serve` checks every record's retention and raises the finding "
        "RT-1 on records kept past it (the first check 10 minutes after start); 0 turns it off "
        "(then run 'disclosure-audit records sweep' from cron).",
    )

    timezone: str = Field(
        default="UTC",
        description="The practice's time zone (IANA name, e.g. America/New_York): the console "
        "shows dates in it, with UTC on hover.",
    )
    console_session_minutes: int = Field(
        default=30,
        ge=1,
        le=24 * 60,
        description="A console session ends after this many minutes without a page view "
        "(HIPAA 164.312(a)(2)(iii) automatic logoff), and at the latest after 12 hours.",
    )

    fhir_record_ref: Literal["reference", "identifier"] = Field(
        default="reference",
        description="How FHIR ingest names the record of a patient entity (docs/FHIR.md): "
        "'reference' takes the id of a Patient/<id> reference, 'identifier' the value of the "
        "patient's identifier (of fhir_patient_identifier_system when set).",
    )
    fhir_patient_identifier_system: str | None = Field(
        default=None,
        description="With fhir_record_ref=identifier: only identifiers of this system (e.g. "
        "the practice's MRN system URI) name a record; others are ignored.",
    )
    fhir_default_purpose: PurposeOfUse | None = Field(
        default=PurposeOfUse.TREAT,
        description="The purpose recorded for a FHIR AuditEvent that states none "
        "(purposeOfEvent and agent.purposeOfUse both absent, as HAPI's BALP interceptor sends); "
        "unset (empty) to refuse such events with 422.",
    )
    fhir_default_actor_role: ActorRole | None = Field(
        default=ActorRole.TREATING_CLINICIAN,
        description="The role recorded for the requesting user of a FHIR AuditEvent whose "
        "agent carries no role this service maps; unset (empty) to refuse such events.",
    )
    fhir_other_category: DataCategory | None = Field(
        default=DataCategory.PROGRESS_NOTES,
        description="The data category recorded for a FHIR resource type the mapping table "
        "does not name (DocumentReference, List, Binary ...) and that carries no security "
        "label saying more; unset (empty) to refuse such resources with 422.",
    )

    @field_validator(
        "fhir_default_purpose",
        "fhir_default_actor_role",
        "fhir_other_category",
        "fhir_patient_identifier_system",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. America/New_York") from None
        return value

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("otlp_endpoint must be an http:// or https:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("database_url must be a postgresql:// URL (or unset for SQLite)")
        return value

    @property
    def uses_postgres(self) -> bool:
        """True when the store is PostgreSQL."""
        return self.database_url is not None

    @property
    def sqlite_path(self) -> Path:
        """The embedded store's file."""
        return self.home / "audit.sqlite3"

    @property
    def log_keys_path(self) -> Path:
        """Where the checkpoint signing keys live."""
        return self.log_key_dir or self.home / "log-keys"

    @property
    def exports_path(self) -> Path:
        """The private folder of export bundles."""
        return self.home / "exports"

    @property
    def master_key_path(self) -> Path:
        """Where the master key is read from."""
        return self.master_key_file or self.home / "master.key"

    def eventsourcing_env(self) -> dict[str, str]:
        """The library's environment for the chosen store."""
        # No library aggregate cache: the ingest writer keeps the records it saved in memory
        # (service/application/ingest.py); the library's cache re-read each record's new
        # events on every load (fast-forward), a query per record per request.
        env: dict[str, str] = {}
        if self.database_url is None:
            self.home.mkdir(parents=True, exist_ok=True)
            env.update(
                PERSISTENCE_MODULE="service.storage.backends:DurableSQLiteFactory",
                SQLITE_DBNAME=str(self.sqlite_path),
                SQLITE_LOCK_TIMEOUT="30",
                APPLICATION_RECORDER_TOPIC="service.storage.recorders:SQLiteAuditRecorder",
            )
            return env
        url = urlsplit(self.database_url)
        env.update(
            PERSISTENCE_MODULE="service.storage.resilience:ResilientPostgresFactory",
            POSTGRES_DBNAME=unquote(url.path.lstrip("/")) or "postgres",
            POSTGRES_HOST=url.hostname or "127.0.0.1",
            POSTGRES_PORT=str(url.port or 5432),
            POSTGRES_USER=unquote(url.username or "postgres"),
            POSTGRES_PASSWORD=unquote(url.password or ""),
            POSTGRES_POOL_SIZE=str(self.postgres_pool_size),
            POSTGRES_MAX_OVERFLOW=str(self.postgres_max_overflow),
            POSTGRES_LOCK_TIMEOUT=str(self.postgres_lock_timeout_seconds),
            POSTGRES_CONNECT_TIMEOUT="5",
            # No health check per checkout (it cost 15% of a write under load): the pool
            # discards connections that broke, and a failed statement is retried on a new one.
            POSTGRES_PRE_PING="n",
            APPLICATION_RECORDER_TOPIC="service.storage.recorders:PostgresAuditRecorder",
        )
        return env
