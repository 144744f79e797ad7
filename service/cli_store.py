"""How the command line opens a store: only ``init``, ``serve`` and ``demo`` may start one.

Every other command opens an existing store or fails, naming where it looked, before it creates
any file: a store started by mistake comes with a new master key and a new signing key, and an
export from it is a signed statement about nothing.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from service.settings import Settings
from service.storage.presence import (
    StoreMissingError,
    StoreUnreachableError,
    find_store_problem,
    store_label,
)

if TYPE_CHECKING:
    from service.container import Services

__all__ = [
    "Created",
    "err",
    "fail",
    "load_settings",
    "open_creating",
    "open_existing",
    "show_store",
]

err = Console(stderr=True, soft_wrap=True)  # whole lines: paths stay greppable

_WHERE = (
    "This command never creates a store. Run it from the directory that holds "
    ".disclosure-audit (where 'serve' runs), set DISCLOSURE_AUDIT_HOME (or "
    "DISCLOSURE_AUDIT_DATABASE_URL) to the store, or start a new store with "
    "'disclosure-audit init'."
)
_UNREACHABLE = "Check DISCLOSURE_AUDIT_DATABASE_URL, or that PostgreSQL is running."
_LOST_MASTER = (
    "Point DISCLOSURE_AUDIT_MASTER_KEY_FILE at this store's master key file (restore it from "
    "backup); a new master key could not open the records already stored."
)


def fail(message: str, hint: str) -> typer.Exit:
    """Print an error and what to do about it; the caller raises the returned exit (code 2)."""
    err.print(f"[red]error:[/red] {escape(message)}\n[dim]{escape(hint)}[/dim]")
    return typer.Exit(2)


def load_settings() -> Settings:
    """The settings from the environment, or a clear error naming the bad variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as error:
        raise fail(f"invalid configuration: {error}", "See README, 'Configuration'.") from None


def _problem(settings: Settings) -> str | None:
    try:
        return find_store_problem(settings)
    except StoreUnreachableError as error:
        raise fail(str(error), _UNREACHABLE) from None


def _check_rules(settings: Settings) -> None:
    # Configuration first: a broken rule file is reported as such, wherever the store is.
    from domain.policy.rulesets import BUILTIN_RULES, Rulebook, RulesetError

    try:
        Rulebook.load(settings.rules_dir or BUILTIN_RULES)
    except RulesetError as error:
        raise fail(
            str(error),
            "Fix the rule file, or unset DISCLOSURE_AUDIT_RULES_DIR to use the built-in rules.",
        ) from None


def _build(settings: Settings, *, create: bool) -> "Services":
    from service.container import build_services
    from service.storage.crypto import MasterKeyError

    try:
        return build_services(settings, create=create)
    except StoreMissingError as error:
        raise fail(str(error), _WHERE) from None
    except MasterKeyError as error:
        raise fail(str(error), "See README, 'Operations'.") from None
    except Exception as error:
        raise fail(
            f"cannot open the store {store_label(settings)} ({type(error).__name__})",
            _UNREACHABLE,
        ) from None


def show_store(settings: Settings) -> None:
    """Tell the person which store this command uses (never a password)."""
    err.print(f"[dim]store: {escape(store_label(settings))}[/dim]")


def open_existing(settings: Settings | None = None) -> "Services":
    """Open the store the settings point at; fail, creating nothing, if there is none."""
    settings = settings or load_settings()
    _check_rules(settings)
    problem = _problem(settings)
    if problem is not None:
        raise fail(problem, _WHERE)
    if not settings.master_key_path.is_file():
        raise fail(
            f"the store {store_label(settings)} exists, but its master key file "
            f"{settings.master_key_path.absolute()} does not",
            _LOST_MASTER,
        )
    services = _build(settings, create=False)
    show_store(settings)
    return services


@dataclass
class Created:
    """What opening a store for ``init``, ``serve`` or ``demo`` had to create."""

    store: bool = False
    master_key: bool = False
    signing_key: bool = False
    signing_key_id: str = ""
    lines: list[str] = field(default_factory=list)


def open_creating(
    settings: Settings, *, force_master_key: bool = False
) -> tuple["Services", Created]:
    """Open the store, creating it, its master key and its signing key where missing.

    A master key is never created for a store that exists: that would start a second key
    hierarchy beside records the first one wraps. ``force_master_key`` (``init``) creates the
    key of a new PostgreSQL store even when DISCLOSURE_AUDIT_CREATE_MASTER_KEY is false.
    """
    from service.storage.crypto import MasterKey

    _check_rules(settings)
    created = Created()
    label = store_label(settings)
    created.store = _problem(settings) is not None
    master_path = settings.master_key_path.absolute()
    created.master_key = not master_path.is_file()
    if created.master_key and not created.store:
        raise fail(
            f"the store {label} exists, but its master key file {master_path} does not",
            _LOST_MASTER,
        )
    if created.master_key and force_master_key:
        MasterKey.load_or_create(master_path, create=True)
    services = _build(settings, create=True)
    ring = services.log.log_keys
    created.signing_key = not ring.generations()
    created.signing_key_id = ring.ensure(create=True)  # its generation: each log's key is its own
    if created.store:
        created.lines.append(f"Created the store {label}.")
    if created.master_key:
        created.lines.append(
            f"Created the master key {master_path} (mode 0600). Back it up: without it no "
            "record in this store can be read."
        )
    if created.signing_key:
        created.lines.append(
            f"Created the signing key {created.signing_key_id} in {ring.directory.absolute()};"
            " each tenant's log has a verifier key of its own to pin ('disclosure-audit log-key"
            " --tenant T')."
        )
    show_store(settings)
    return services, created
