"""Tables of the read models. Bumping SCHEMA_VERSION makes the worker rebuild them."""

from projections.ports import Cursor

__all__ = ["SCHEMA_VERSION", "TABLES", "acks_join", "create", "drop"]

# Indexes are not part of the version: ``create`` adds missing ones on every start.
# 3: the accounting's verdict columns (impermissible, ruleset, instrument); 4: pv_counts;
# 5: pv_facts.recorded_at (FHIR AuditEvent.recorded, searched by ``date``).
SCHEMA_VERSION = 5

_COMMON = {
    "postgres": {"uuid": "UUID", "ts": "TIMESTAMPTZ", "bytes": "BYTEA", "int": "BIGINT"},
    "sqlite": {"uuid": "TEXT", "ts": "TEXT", "bytes": "BLOB", "int": "INTEGER"},
}

TABLES = ["pv_facts", "pv_findings", "pv_acks", "pv_counts", "pv_held", "pv_tracking"]

_DDL = [
    # One row per judged fact (accesses, disclosures, reports): filterable columns hold no PHI;
    # names, refs and free text are in ``sealed``, encrypted with the record's key.
    "CREATE TABLE IF NOT EXISTS pv_facts (tenant_id TEXT NOT NULL, position {int} NOT NULL,"
    " record_id {uuid} NOT NULL, version {int} NOT NULL, type TEXT NOT NULL,"
    " event_id {uuid} NOT NULL, occurred_at {ts} NOT NULL, occurred_day TEXT NOT NULL,"
    " actor_id TEXT NOT NULL, actor_role TEXT NOT NULL, purpose TEXT,"
    " categories TEXT NOT NULL, break_glass {int} NOT NULL DEFAULT 0, legal_basis TEXT,"
    " recipient_key {bytes}, accountable {int}, excess TEXT NOT NULL DEFAULT '',"
    # What the 164.528 accounting needs of the latest judgment (domain/policy/accounting.py):
    # the rules that make the fact impermissible, the rule set (its lookback), and the blinded
    # key of the report or warning it is or relies on.
    " impermissible TEXT NOT NULL DEFAULT '', ruleset TEXT NOT NULL DEFAULT '',"
    " instrument {bytes}, sealed {bytes} NOT NULL, recorded_at {ts} NOT NULL,"
    " PRIMARY KEY (tenant_id, position))",
    "CREATE INDEX IF NOT EXISTS pv_facts_type ON pv_facts (tenant_id, type, position)",
    "CREATE INDEX IF NOT EXISTS pv_facts_record ON pv_facts (tenant_id, record_id, position)",
    "CREATE INDEX IF NOT EXISTS pv_facts_actor ON pv_facts (tenant_id, actor_id, position)",
    "CREATE INDEX IF NOT EXISTS pv_facts_day ON pv_facts (tenant_id, type, occurred_day)",
    # Break-glass accesses, rare and listed practice-wide for review: without this index a
    # query that matches few reads every access. (One by accountability was tried and taken
    # out: without statistics the planner preferred it for the accounting, 206 ms at 1M.)
    "CREATE INDEX IF NOT EXISTS pv_facts_break_glass"
    " ON pv_facts (tenant_id, type, break_glass, position)",
    # A record's accounting: led by the record, so a wide date range never tempts the planner
    # into scanning every disclosure of the practice (337 ms at p95 with 1M events without it).
    "CREATE INDEX IF NOT EXISTS pv_facts_record_day"
    " ON pv_facts (tenant_id, record_id, type, occurred_day)",
    "CREATE TABLE IF NOT EXISTS pv_findings (finding_id {uuid} PRIMARY KEY,"
    " tenant_id TEXT NOT NULL, record_id {uuid} NOT NULL, subject_position {int} NOT NULL,"
    " subject_event_id {uuid} NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL,"
    " citation TEXT NOT NULL, message TEXT NOT NULL, evidence TEXT NOT NULL,"
    " ruleset TEXT NOT NULL, withdrawn {int} NOT NULL DEFAULT 0,"
    " raised_position {int} NOT NULL, changed_position {int} NOT NULL)",
    # The findings queue by status (open/acknowledged or withdrawn), in its order; it replaces
    # pv_findings_tenant, which lacked the rule and so had every finding sorted (216 ms at 1M).
    "CREATE INDEX IF NOT EXISTS pv_findings_status ON pv_findings"
    " (tenant_id, withdrawn, subject_position, rule)",
    "DROP INDEX IF EXISTS pv_findings_tenant",
    "CREATE INDEX IF NOT EXISTS pv_findings_subject ON pv_findings (tenant_id, subject_event_id)",
    "CREATE INDEX IF NOT EXISTS pv_findings_rule ON pv_findings"
    " (tenant_id, rule, withdrawn, subject_position)",
    # The findings queue in its order, practice-wide and for one record.
    "CREATE INDEX IF NOT EXISTS pv_findings_queue ON pv_findings"
    " (tenant_id, subject_position, rule)",
    "CREATE INDEX IF NOT EXISTS pv_findings_record ON pv_findings"
    " (tenant_id, record_id, subject_position, rule)",
    "CREATE TABLE IF NOT EXISTS pv_acks (tenant_id TEXT NOT NULL, finding_id TEXT NOT NULL,"
    " resolution TEXT NOT NULL, position {int} NOT NULL, PRIMARY KEY (tenant_id, finding_id))",
    # The overview's counts, kept as the rows above change (projections/model.py): scanning
    # for them took 0.9 s at 1M events. chart: "basis" (disclosures by month and legal basis),
    # "role" (accesses by role), "rule" (findings not withdrawn, by month of the judged fact
    # and rule), "open" (open findings by "rule severity"); month is '' where it is not one.
    "CREATE TABLE IF NOT EXISTS pv_counts (tenant_id TEXT NOT NULL, chart TEXT NOT NULL,"
    " month TEXT NOT NULL, key TEXT NOT NULL, n {int} NOT NULL,"
    " PRIMARY KEY (tenant_id, chart, month, key))",
    # Events of stalled tenants (projections/held.py): tiny, and empty while all is well.
    "CREATE TABLE IF NOT EXISTS pv_held (notification_id {int} PRIMARY KEY,"
    " tenant_id TEXT NOT NULL, position {int} NOT NULL, reason TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS pv_held_tenant ON pv_held (tenant_id, notification_id)",
    "CREATE TABLE IF NOT EXISTS pv_tracking (projection TEXT PRIMARY KEY,"
    " notification_id {int} NOT NULL, schema_version {int} NOT NULL)",
]


def acks_join(cursor: Cursor) -> str:
    """``LEFT JOIN pv_acks a`` onto findings aliased ``x``: an acknowledgement names its finding
    by the id's text (pv_acks.finding_id is TEXT; pv_findings.finding_id is a UUID on
    PostgreSQL)."""
    text_id = "CAST(x.finding_id AS TEXT)" if cursor.dialect == "postgres" else "x.finding_id"
    return f" LEFT JOIN pv_acks a ON a.tenant_id = x.tenant_id AND a.finding_id = {text_id}"


def create(cursor: Cursor) -> None:
    """Create the read-model tables if they do not exist."""
    types = _COMMON[cursor.dialect]
    for statement in _DDL:
        cursor.execute(statement.format(**types))


def drop(cursor: Cursor) -> None:
    """Drop every read-model table (before a rebuild)."""
    for table in TABLES:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
