"""``disclosure-audit master-key rotate``: move a store to a new master key, online, resumable.

The steps are in ``service/storage/rotation.py``; this module opens the store with the master key
configured now (the old one), creates the new key file if asked to, shows progress and tells the
operator what to do next, including after an interruption (run the same command again).
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from service.cli_store import err, fail, load_settings, open_existing
from service.storage.presence import store_label

if TYPE_CHECKING:
    from service.settings import Settings
    from service.storage.crypto import MasterKey

__all__ = ["master_key_app"]

master_key_app = typer.Typer(help="Rotate the master key.", no_args_is_help=True)
out = Console(soft_wrap=True)  # whole lines: paths stay greppable

_RESUME = "Run the same command again: the rotation resumes where it stopped."


def _load_new(path: Path) -> "MasterKey":
    from service.storage.crypto import MasterKey, MasterKeyError

    try:
        return MasterKey.load_or_create(path, create=False)
    except MasterKeyError as error:
        raise fail(
            str(error), "Give --new-key-file a new path (it is created) or a valid key file."
        ) from None


def _already_rotated(settings: "Settings", new_path: Path) -> bool:
    """Whether the store is on the new key only: a rotation that finished (nothing to resume)."""
    from service.container import build_services

    try:
        services = build_services(settings.model_copy(update={"master_key_file": new_path}),
                                  create=False)  # fmt: skip
    except Exception:
        return False
    try:
        keys = services.audit.service_keys
        left = services.audit.db.read_one("SELECT COUNT(*) AS n FROM da_master_rotations", ())
        return keys.masters() == {keys.master.key_id} and left is not None and left["n"] == 0
    finally:
        services.close()


@master_key_app.command("rotate")
def rotate(
    new_key_file: Annotated[
        Path,
        typer.Option(
            "--new-key-file", help="The new master key file; created (mode 0600) if missing."
        ),
    ],
    batch_size: Annotated[
        int, typer.Option(min=1, help="Record keys re-wrapped per committed transaction.")
    ] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Re-wrap every key of the store under a new master key, while the service runs.

    Safe to interrupt: run it again to resume. Then restart every process with the new key
    file and delete the old one.
    """
    from service.storage.crypto import MasterKey, MasterKeyError
    from service.storage.rotation import RotationError, RotationStep, rotate_master_key

    settings = load_settings()
    old_path = settings.master_key_path.absolute()
    new_path = new_key_file.absolute()
    if new_path.exists() and new_path.resolve() == old_path.resolve():
        raise fail(
            f"{new_path} is the master key file in use (DISCLOSURE_AUDIT_MASTER_KEY_FILE)",
            "Give --new-key-file the path of a new file: it is created for you.",
        )
    result: dict[str, Any] = {
        "store": store_label(settings),
        "old_key_file": str(old_path),
        "new_key_file": str(new_path),
        "new_key_created": False,
    }
    if new_path.exists() and _already_rotated(settings, new_path):
        result |= {"new_key_id": _load_new(new_path).key_id, "already_rotated": True}
        if as_json:
            out.print_json(json.dumps(result))
        else:
            out.print(
                f"The store {result['store']} is on the master key {new_path} already; nothing "
                f"to do. Run with DISCLOSURE_AUDIT_MASTER_KEY_FILE={new_path} and delete "
                f"{old_path}.",
                highlight=False,
            )
        return
    services = open_existing(settings)
    try:
        if not new_path.exists():
            MasterKey.load_or_create(new_path, create=True)
            result["new_key_created"] = True
            err.print(
                f"Created the new master key {new_path} (mode 0600). Back it up now: once the "
                "rotation is done, only it opens this store.",
                highlight=False,
            )
        new = _load_new(new_path)
        with Progress(console=err, transient=True, disable=as_json) as progress:
            task = progress.add_task("Wrapping the service keys under the new master key")

            def show(step: RotationStep) -> None:
                if step.step == "generation":
                    progress.update(task, description="Re-wrapping record keys")
                elif step.step == "rewrapped":
                    progress.update(task, completed=step.done, total=step.total)

            done = rotate_master_key(
                services.audit.db,
                services.audit.service_keys,
                services.audit.keyring,
                new,
                batch_size=batch_size,
                progress=show,
            )
    except typer.Exit:
        raise
    except RotationError as error:
        raise fail(str(error), "Give --new-key-file a new path: it is created for you.") from None
    except MasterKeyError as error:
        raise fail(str(error), _RESUME) from None
    except Exception as error:
        raise fail(
            f"the rotation stopped ({type(error).__name__}); nothing is lost", _RESUME
        ) from None
    finally:
        services.close()
    result |= {
        "old_key_id": done.old_key_id,
        "new_key_id": done.new_key_id,
        "kek_generation": done.kek_generation,
        "record_keys_rewrapped": done.rewrapped,
        "resumed": done.resumed,
        "already_rotated": False,
    }
    if as_json:
        out.print_json(json.dumps(result))
        return
    resumed = " (resumed an interrupted rotation)" if done.resumed else ""
    out.print(
        f"Rotated the master key of {result['store']}{resumed}: key id {done.old_key_id} -> "
        f"{done.new_key_id}; {done.rewrapped} record keys re-wrapped under key-encryption key "
        f"generation {done.kek_generation}. The old key file opens nothing in this store any "
        f"more.\nNext: restart every process with DISCLOSURE_AUDIT_MASTER_KEY_FILE={new_path}, "
        f"then delete {old_path} and its copies.",
        highlight=False,
    )
