"""The ``disclosure-audit`` command line: init, serve, demo, keys, export, verify, openapi."""

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from service.auth import TENANT_PATTERN, Principal, Role
from service.cli_keys import master_key_app
from service.cli_records import records_app
from service.cli_store import err, fail, load_settings, open_creating, open_existing
from service.storage.presence import store_label

__all__ = ["main"]

app = typer.Typer(
    help="Audit trail of disclosures of mental-health records.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
projections_app = typer.Typer(help="Manage the read models.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")
app.add_typer(master_key_app, name="master-key")
app.add_typer(records_app, name="records")
out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


_fail = fail


def _load_demo(as_json: bool) -> dict[str, int | str]:
    from service.application.ingest import Submission
    from service.demo import DEMO_TENANT, demo_submissions

    submissions = list(demo_submissions())
    services, made = open_creating(load_settings())
    for line in made.lines:
        err.print(line)
    created = 0
    try:
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("Loading the demo scenarios", total=len(submissions))
            for record_ref, fact in submissions:
                _, new = services.ingest.record_facts(
                    DEMO_TENANT, [Submission(record_ref=record_ref, fact=fact)]
                )
                created += int(new)
                progress.advance(task)
    finally:
        services.close()
    return {
        "tenant": DEMO_TENANT,
        "events": len(submissions),
        "new": created,
        "store": store_label(services.settings),
    }


@app.command()
def init(as_json: JsonFlag = False) -> None:
    """Create the store, its master key and its signing key; says what existed already."""
    settings = load_settings()
    services, created = open_creating(settings, force_master_key=True)
    try:  # each tenant's log has its own keys: those of the tenants with events (none when new)
        tenants = services.audit.tenant_log.tenants()
        vkeys = [line for t in tenants for line in services.log.vkeys(t).splitlines()]
    finally:
        services.close()
    master_path = settings.master_key_path.absolute()
    key_dir = settings.log_keys_path.absolute()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "store": store_label(settings),
                    "store_created": created.store,
                    "master_key_file": str(master_path),
                    "master_key_created": created.master_key,
                    "log_key_dir": str(key_dir),
                    "signing_key_id": created.signing_key_id,
                    "signing_key_created": created.signing_key,
                    "verifier_keys": vkeys,
                }
            )
        )
        return
    label = store_label(settings)
    for line in created.lines:
        out.print(line, highlight=False)
    if not created.store:
        out.print(f"The store {label} exists already.", highlight=False)
    if not created.master_key:
        out.print(f"The master key {master_path} exists already.", highlight=False)
    if not created.signing_key:
        out.print(
            f"The signing key {created.signing_key_id} in {key_dir} exists already.",
            highlight=False,
        )
    if not vkeys:
        out.print(
            "No tenant has events yet. Each tenant's log has its own verifier key, named by its"
            " origin: 'disclosure-audit log-key --tenant T' prints the one to pin.",
            highlight=False,
        )
        return
    out.print("Verifier keys to pin (each names its tenant's log):", highlight=False)
    for line in vkeys:
        out.print(line, soft_wrap=True, highlight=False)


@app.command()
def demo(as_json: JsonFlag = False) -> None:
    """Load the PRODUCT.md scenarios into tenant 'demo-practice' (safe to repeat)."""
    summary = _load_demo(as_json)
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(
            f"Demo tenant [bold]{summary['tenant']}[/bold]: {summary['events']} events "
            f"({summary['new']} new, the rest were already stored)."
        )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    with_demo: Annotated[
        bool, typer.Option("--demo", help="Load the demo data and print a ready API key first.")
    ] = False,
) -> None:
    """Run the HTTP API (SQLite in DISCLOSURE_AUDIT_HOME unless a database URL is set)."""
    import uvicorn

    from service.http_server import ProblemHttpToolsProtocol
    from service.logs import logging_config

    overrides = {"HOST": host, "PORT": port, "WORKERS": workers}
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"DISCLOSURE_AUDIT_{name}"] = str(value)
    settings = load_settings()
    if not settings.uses_postgres and settings.workers > 1:
        err.print("[yellow]note:[/yellow] SQLite serialises writes; more workers add no speed.")
    if with_demo:
        summary = _load_demo(as_json=False)
        services = open_existing(settings)
        try:
            _, token = services.keys.create(
                str(summary["tenant"]), {Role.INGEST, Role.COMPLIANCE, Role.REGULATOR}, "demo"
            )
        finally:
            services.close()
        base = f"http://{settings.host}:{settings.port}"
        out.print(
            f"Demo data loaded into tenant [bold]{summary['tenant']}[/bold] "
            f"({summary['events']} events).\n"
            f"API:  {base}/v1   interactive docs: {base}/docs\n"
            f"Try:  curl -H 'Authorization: Bearer $KEY' {base}/v1/records/jr-2041/timeline\n"
            "API key for the demo tenant (roles ingest, compliance, regulator), shown once:"
        )
        out.print(token, soft_wrap=True, highlight=False)
    else:
        # Fail fast, with a clear message, on a bad configuration; start the store and its
        # keys here (the one place besides init and demo allowed to), and say so.
        services, made = open_creating(settings)
        services.close()
        for line in made.lines:
            err.print(line)
    uvicorn.run(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,  # uvicorn logs raw paths, which carry record refs; we log routes
        log_level=settings.log_level.lower(),
        log_config=logging_config(settings.log_level, settings.log_format),
        # SIGTERM: stop accepting, let in-flight requests finish for this long, then the
        # lifespan closes the pools. Orchestrators must wait longer before SIGKILL.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        http=ProblemHttpToolsProtocol,  # parser refusals as problem+json too
    )


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant (practice) the key belongs to.")],
    role: Annotated[
        list[Role], typer.Option(help="A role; repeat for several.", case_sensitive=False)
    ],
    label: Annotated[str | None, typer.Option(help="A note for operators.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key. It is printed once, alone on the last line; only its hash is kept."""
    if not TENANT_PATTERN.match(tenant):
        raise _fail(f"invalid tenant id {tenant!r}", "Use lower-case letters, digits and '-'.")
    services = open_existing()
    try:
        key_id, token = services.keys.create(tenant, set(role), label)
    finally:
        services.close()
    if as_json:
        out.print_json(json.dumps({"key_id": key_id, "tenant": tenant, "key": token}))
        return
    err.print(
        f"Created key {key_id} for tenant {tenant} with roles "
        f"{', '.join(sorted(r.value for r in role))}. Store it now; it cannot be shown again:"
    )
    print(token)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List keys (never their secrets)."""
    services = open_existing()
    try:
        keys = services.keys.list(tenant)
    finally:
        services.close()
    if as_json:
        rows = [
            {
                "key_id": k.key_id,
                "tenant": k.tenant_id,
                "roles": [r.value for r in k.roles],
                "label": k.label,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in keys
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table("tenant", "roles", "label", "created", "status")
    table.add_column("key id", no_wrap=True)
    for k in keys:
        table.add_row(
            k.tenant_id,
            ", ".join(r.value for r in k.roles),
            k.label or "",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active",
            k.key_id,
        )
    out.print(table if keys else "No keys yet: create one with 'disclosure-audit keys create'.")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by 'keys list'.")],
) -> None:
    """Revoke a key; requests with it fail with 401 from now on."""
    services = open_existing()
    try:
        revoked = services.keys.revoke(key_id)
    finally:
        services.close()
    if not revoked:
        raise _fail(f"no active key {key_id}", "See 'disclosure-audit keys list'.")
    out.print(f"Revoked key {key_id}.")


@app.command()
def project() -> None:
    """Run the projection worker until SIGTERM or Ctrl-C (PROJECTIONS=external deployments)."""
    import signal
    import threading

    # Handlers first: a SIGTERM while the store is being opened still ends the worker cleanly.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    services = open_existing()
    try:
        err.print(f"Projecting from notification {services.projector.processed()}; Ctrl-C stops.")
        services.projector.run(stop)
        # Read the position before closing: after close() the pool takes no more queries.
        stopped_at = services.projector.processed()
    finally:
        services.close()
    err.print(f"Stopped at notification {stopped_at}.")


@projections_app.command("rebuild")
def projections_rebuild(as_json: JsonFlag = False) -> None:
    """Drop the read models and replay the whole event log into them."""
    import time

    services = open_existing()
    started = time.perf_counter()
    try:
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("Rebuilding the read models from the event log", total=None)

            def show(done: int, target: int) -> None:
                progress.update(task, completed=done, total=target)

            applied = services.projector.rebuild(show)
        done = services.projector.processed()
    finally:
        services.close()
    seconds = time.perf_counter() - started
    if as_json:
        summary = {
            "events": applied,
            "notification": done,
            "seconds": round(seconds, 3),
            "store": store_label(services.settings),
        }
        out.print_json(json.dumps(summary))
    else:
        # A running server's projection worker shares the replay, so this command may apply
        # fewer events than the log holds.
        out.print(
            f"Rebuilt the read models from {applied} events in {seconds:.1f} s, up to "
            f"notification {done}."
        )


@app.command()
def rules(
    directory: Annotated[
        Path | None, typer.Argument(help="Rule directory to check (default: the configured one).")
    ] = None,
    as_json: JsonFlag = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the rules reference (docs/RULES.md).")
    ] = False,
) -> None:
    """Validate the jurisdiction rule files and list what they define."""
    from domain.policy.reference import render_markdown
    from domain.policy.rulesets import BUILTIN_RULES, Rulebook, RulesetError

    source = directory or load_settings().rules_dir or BUILTIN_RULES
    try:
        book = Rulebook.load(source)
    except RulesetError as error:
        raise _fail(str(error), "Each value needs 'value', 'citation' and 'effective'.") from None
    if markdown:
        sys.stdout.write(render_markdown(book))
        return
    summary = {
        ident: {"version": rs.ruleset.version, "title": rs.ruleset.title, "rules": sorted(rs.rules)}
        for ident, rs in sorted(book.rulesets.items())
    }
    if as_json:
        out.print_json(json.dumps({"directory": str(source), "rulesets": summary}))
        return
    table = Table("jurisdiction", "version", "title", "rules", title=f"Rule sets in {source}")
    for ident, info in summary.items():
        table.add_row(ident, str(info["version"]), str(info["title"]), str(len(info["rules"])))
    out.print(table)


@app.command()
def export(  # noqa: PLR0917 - typer maps each parameter to an option
    tenant: Annotated[str, typer.Option(help="Tenant whose log to export.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New directory for the bundle.")],
    since: Annotated[
        str | None, typer.Option(help="First day (YYYY-MM-DD) of occurred_at.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD) of occurred_at.")] = None,
    record: Annotated[
        list[str] | None, typer.Option(help="Only this record (repeat for several).")
    ] = None,
    previous_checkpoint: Annotated[
        Path | None, typer.Option(help="checkpoint.txt of an earlier export, to prove continuity.")
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty", help="Write the bundle even when the dates and records hold no event."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a signed, offline-verifiable audit bundle for a regulator."""
    import shutil
    from datetime import date

    from service.integrity.export import ExportScope, write_bundle
    from service.integrity.jobs import make_private
    from service.telemetry import observe_export

    if not TENANT_PATTERN.match(tenant):
        raise _fail(f"invalid tenant id {tenant!r}", "Use lower-case letters, digits and '-'.")
    if out_dir.exists():
        raise _fail(f"{out_dir} already exists", "Choose a new directory for the bundle.")
    try:
        scope = ExportScope(
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
            record_refs=tuple(record or ()),
        )
    except ValueError:
        raise _fail("--since and --until take dates like 2026-01-31", "Fix the date.") from None
    try:
        previous = previous_checkpoint.read_text() if previous_checkpoint else None
    except OSError as error:
        raise _fail(f"cannot read {error.filename}", "Check --previous-checkpoint.") from None
    services = open_existing()
    label = store_label(services.settings)
    try:
        _check_export_scope(services, tenant, record or [], label)
        # Exports are reads of the audit trail too: record who ran this one, and its scope.
        operator = Principal(f"cli:{getpass.getuser()}", tenant, frozenset({Role.REGULATOR}))
        services.reads.record(operator, "disclosure-audit export",
                              {"since": since, "until": until, "record_refs": record})  # fmt: skip
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("Exporting", total=None)

            def advance(position: int, size: int) -> None:
                progress.update(task, completed=position, total=size)

            with observe_export("full" if scope.full else "partial", tenant):
                summary = write_bundle(
                    services.log, services.audit, tenant, out_dir, scope=scope,
                    previous_checkpoint=previous, progress=advance,
                )  # fmt: skip
    finally:
        services.close()
    make_private(out_dir)  # a plaintext copy of PHI: owner only, as HTTP bundles are
    if summary.events == 0 and not allow_empty:
        # An empty bundle reads as "nothing was disclosed": only write one on purpose.
        shutil.rmtree(out_dir)
        raise _fail(
            f"no event of tenant {tenant!r} in {label} falls in the dates and records asked for;"
            " nothing written",
            "Check --since, --until and --record, or pass --allow-empty to write an empty bundle.",
        )
    result = {
        "store": label,
        "directory": str(summary.directory),
        "events": summary.events,
        "erased": summary.erased,
        "tree_size": summary.checkpoint.size,
        "origin": summary.checkpoint.origin,
    }
    if as_json:
        out.print_json(json.dumps(result))
        return
    out.print(
        f"Wrote {summary.events} events ({summary.erased} erased) of {summary.checkpoint.origin}"
        f" at tree size {summary.checkpoint.size} to {summary.directory}.\n"
        f"Verify with: disclosure-audit verify {summary.directory} --public-key "
        f"{summary.directory}/public-key.txt (better: the key pinned at onboarding)"
    )


def _check_export_scope(services: Any, tenant: str, records: list[str], label: str) -> None:
    """Fail before writing anything when the export could not be what the operator meant."""
    if not services.log.log_keys.generations():
        raise _fail(
            f"no signing key in {services.settings.log_keys_path.absolute()}",
            "Set DISCLOSURE_AUDIT_LOG_KEY_DIR to this store's key directory, or add a key with "
            "'disclosure-audit log-key --rotate' (verifiers must then pin it).",
        )
    if services.log.size(tenant) == 0:
        raise _fail(
            f"tenant {tenant!r} has no events in {label}",
            "Check the tenant id ('disclosure-audit keys list' shows the tenants with keys), "
            "and that this is the store you meant.",
        )
    for number, ref in enumerate(records, start=1):
        # By position, not by value: a record reference can identify a client.
        if not services.audit.has_record(tenant, ref):
            raise _fail(
                f"--record value number {number} is not a record of tenant {tenant!r} in {label}",
                "Check the record reference.",
            )


@app.command()
def verify(
    directory: Annotated[Path, typer.Argument(help="The bundle directory.")],
    public_key: Annotated[Path, typer.Option(help="File of pinned verifier keys.")],
    as_json: JsonFlag = False,
) -> None:
    """Check a bundle offline: signatures, leaves, tree, proofs, digests. Exit 0 if all hold."""
    from service.verify import BundleError, verify_bundle

    try:
        result = verify_bundle(directory, public_key.read_text())
    except OSError as error:
        raise _fail(f"cannot read {error.filename}", "Check the paths.") from None
    except BundleError as error:
        if as_json:
            out.print_json(json.dumps({"ok": False, "problem": str(error)}))
            raise typer.Exit(1) from None
        err.print(f"[red]FAILED:[/red] {error}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps({"ok": True, **result.__dict__}))
        return
    out.print(
        f"[green]OK[/green]: {result.events} events ({result.erased} erased) of {result.origin}, "
        f"{'every leaf' if result.full else 'each with an inclusion proof'} of a tree of "
        f"{result.tree_size}, signed by {result.key_name}"
        + (
            " (the key of every log before each had its own: a format 1 bundle)."
            if result.legacy_key
            else ", the key named by the log's origin."
        )
    )


@app.command("log-key")
def log_key(
    rotate: Annotated[bool, typer.Option("--rotate", help="Add a new signing key.")] = False,
    tenant: Annotated[
        str | None,
        typer.Option(help="Only this tenant's log (also before its first event)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show (or rotate) the checkpoint signing keys; prints each tenant log's verifier keys.

    Every tenant's log has its own keys, named by its origin (<origin prefix>/<tenant>): one
    vkey per log and key generation, oldest first, for every tenant with events (or --tenant).
    """
    from service.integrity.signing import LogKeyring, log_origin

    settings = load_settings()
    if tenant is not None and not TENANT_PATTERN.match(tenant):
        raise _fail(f"invalid tenant id {tenant!r}", "Use lower-case letters, digits and '-'.")
    ring = LogKeyring(settings.log_keys_path, settings.log_origin, may_create=False)
    key_dir = settings.log_keys_path.absolute()
    if rotate:
        # Rotation is an explicit act, but on an existing store only: never a first key for a
        # store that is not there (another directory, a wrong DISCLOSURE_AUDIT_HOME).
        open_existing(settings).close()
        generation = ring.rotate()
        err.print(
            f"New signing key {generation}: a new key for every tenant's log; older keys stay "
            "listed for verification."
        )
    elif not ring.generations():
        raise _fail(
            f"no signing key in {key_dir}",
            "This command never creates the first one. Run it from the directory that holds "
            ".disclosure-audit, set DISCLOSURE_AUDIT_HOME or DISCLOSURE_AUDIT_LOG_KEY_DIR, or "
            "start a new store with 'disclosure-audit init'.",
        )
    if tenant is not None:
        tenants = [tenant]  # the keys are derived: no store needed, and none is written
    else:
        services = open_existing(settings)
        try:
            tenants = services.audit.tenant_log.tenants()
        finally:
            services.close()
    err.print(f"[dim]signing keys: {escape(str(key_dir))}[/dim]")
    logs: list[dict[str, object]] = []
    lines: list[str] = []
    for name in tenants:
        keys = ring.keys(log_origin(settings.log_origin, name))
        logs.append({"tenant": name, "origin": keys[-1].name, "key_id": keys[-1].id_hex,
                     "vkey": keys[-1].vkey, "vkeys": [k.vkey for k in keys]})  # fmt: skip
        lines += [k.vkey + "\n" for k in keys]
    if as_json:
        out.print_json(json.dumps(logs))
        return
    if not logs:
        err.print("No tenant has events yet; '--tenant T' prints the keys of T's log.")
    sys.stdout.write("".join(lines))


@app.command()
def openapi(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here, not stdout.")] = None,
) -> None:
    """Print (or write) the OpenAPI document of the API."""
    from service.openapi_doc import openapi_json

    text = openapi_json()
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text)
        err.print(f"Wrote {out_file}.")


def main() -> None:
    """Entry point of the ``disclosure-audit`` script."""
    app()
