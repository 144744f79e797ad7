"""``disclosure-audit records``: retention and destruction of a tenant's records.

``records destroy --tenant T --dry-run`` lists exactly the records due for destruction today
and why each is due; without ``--dry-run`` it asks (or takes ``--yes``), then destroys each one
through the lifecycle use case (``service/application/lifecycle.py``): certificate, key,
plaintext.
"""

import getpass
import json
import sys
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from service.application.lifecycle import (
    DestructionRefusedError,
    RecordRetention,
    retention_status,
)
from service.auth import TENANT_PATTERN
from service.cli_store import err, fail, open_existing
from service.container import Services

__all__ = ["records_app"]

records_app = typer.Typer(help="Retention and destruction of records.", no_args_is_help=True)

_out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _due_row(report: RecordRetention) -> dict[str, Any]:
    retention = report.retention
    assert retention is not None  # noqa: S101 - only due records are listed
    return {
        "record_ref": report.record_ref,
        "record_id": str(report.record_id),
        "ruleset": retention.ruleset,
        "rule": retention.rule,
        "citation": retention.citation,
        "last_service": str(retention.last_service),
        "keep_until": str(retention.keep_until),
        "due_on": str(retention.due_on),
    }


@records_app.command("destroy")
def destroy(
    tenant: Annotated[str, typer.Option(help="Tenant (practice) whose due records to destroy.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list the due records; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Destroy every record of a tenant whose retention has ended and that nothing blocks.

    A record under a legal hold, with an open legal demand, or without the facts its schedule
    needs (a birth date) is never due. Each destruction records its certificate
    (RecordDestroyed), destroys the record's key in every process and purges its plaintext.
    """
    if not TENANT_PATTERN.match(tenant):
        raise fail(f"invalid tenant id {tenant!r}", "Use lower-case letters, digits and '-'.")
    today = datetime.now(UTC).date()
    services = open_existing()
    try:
        due, summary = _plan(services, tenant, today, as_json)
        if dry_run or not due:
            _print_plan(summary, as_json, dry_run)
            return
        if not as_json:
            _print_plan(summary, as_json, dry_run=True)
        if not yes:
            if not sys.stdin.isatty():
                raise fail(
                    "not confirmed", "Destruction cannot be undone: pass --yes to confirm it."
                )
            typer.confirm(f"Destroy these {len(due)} records? This cannot be undone", abort=True)
        destroyed, refused = _destroy_all(services, tenant, due, today, as_json)
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps({"tenant": tenant, "destroyed": destroyed, "refused": refused}))
        return
    _out.print(f"Destroyed {len(destroyed)} records of {tenant}; each has its certificate.")
    for item in refused:
        _out.print(f"Not destroyed: {item['record_ref']}: {'; '.join(item['reasons'])}")


def _plan(
    services: Services, tenant: str, today: date, as_json: bool
) -> tuple[list[RecordRetention], dict[str, Any]]:
    """Every record's retention today: the due ones, and counts of the others."""
    ids = services.audit.tenant_log.records(tenant)
    due: list[RecordRetention] = []
    counts = {"kept": 0, "blocked": 0, "destroyed": 0}
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"Reading the {len(ids)} records of {tenant}", total=len(ids))
        for report in services.lifecycle.records(tenant, today, ids):
            progress.advance(task)
            if report.retention is None:
                counts["destroyed"] += 1
            elif (status := retention_status(report.retention, today)) == "due":
                due.append(report)
            else:
                counts[status] += 1
    summary: dict[str, Any] = {"tenant": tenant, "as_of": str(today)}
    summary["due"] = [_due_row(r) for r in due]
    summary |= {f"{k}_count": n for k, n in counts.items()}
    return due, summary


def _destroy_all(
    services: Services, tenant: str, due: list[RecordRetention], today: date, as_json: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by = f"operator {getpass.getuser()} (disclosure-audit records destroy)"
    destroyed, refused = [], []
    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task("Destroying", total=len(due))
        for report in due:
            ref = str(report.record_ref)
            try:
                certificate = services.lifecycle.destroy(tenant, ref, by, today)
            except DestructionRefusedError as refusal:  # changed since it was listed
                refused.append({"record_ref": ref, "reasons": [r for _, r in refusal.reasons]})
            else:
                destroyed.append(
                    {
                        "record_ref": ref,
                        "record_id": str(certificate.record_id),
                        "certificate_position": certificate.position,
                    }
                )
            progress.advance(task)
    return destroyed, refused


def _print_plan(summary: dict[str, Any], as_json: bool, dry_run: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary | {"dry_run": dry_run}))
        return
    due = summary["due"]
    if due:
        table = Table("record", "rule set", "rule", "last service", "kept until", "why it is due")
        for row in due:
            table.add_row(
                row["record_ref"],
                row["ruleset"],
                row["rule"],
                row["last_service"],
                row["keep_until"],
                row["citation"],
            )
        _out.print(table)
    _out.print(
        f"{len(due)} records of {summary['tenant']} are due for destruction on "
        f"{summary['as_of']}; {summary['kept_count']} are kept, {summary['blocked_count']} "
        f"blocked (holds, open demands, missing birth dates), {summary['destroyed_count']} "
        "destroyed already." + (" Nothing was changed (dry run)." if dry_run and due else "")
    )


@records_app.command("sweep")
def sweep(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every record's retention now and raise the finding RT-1 on records kept past it
    (withdrawn once destroyed or held). ``serve`` does this daily; use this from cron when
    DISCLOSURE_AUDIT_RETENTION_SWEEP_HOURS=0."""
    from service.routes.lifecycle import sweep_all

    services = open_existing()
    try:
        if tenant is None:
            totals = sweep_all(services)
        else:
            changed = services.lifecycle.sweep(tenant, datetime.now(UTC).date())
            totals = {"tenants": 1} | changed
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(totals))
        return
    _out.print(
        f"Checked the records of {totals['tenants']} tenants: RT-1 raised on "
        f"{totals['raised']}, withdrawn from {totals['withdrawn']}."
    )
