# SPDX-License-Identifier: Apache-2.0
"""Administration of the service database: ``earmark keys``, ``users``, ``policy``,
``audit``, ``db``."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from earmark.cli import DbOption, die, load_settings, resolve_home, stderr, stdout, user_errors
from earmark.moderation.policy import PolicyBody
from earmark.store.db import Database, open_db

keys_app = typer.Typer(help="API keys (roles: uploader, owner, moderator, admin).",
                       no_args_is_help=True)
users_app = typer.Typer(help="People who sign in to the review pages.", no_args_is_help=True)
policy_app = typer.Typer(help="Owner policies: show, set, simulate.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
db_app = typer.Typer(help="The service database.", no_args_is_help=True)


def _db(db: Path | None) -> Database:
    with user_errors():
        return open_db(home=resolve_home(db), url=load_settings().database_url)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="uploader, owner, moderator or admin")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    owner: Annotated[str | None, typer.Option(help="The owner an owner key acts for.")] = None,
    db: DbOption = None,
) -> None:
    """Make a key; it is printed once on stdout (only its hash is kept)."""
    from earmark.service.access import create_key

    with user_errors():
        out, key = create_key(_db(db), name=name, role=role,  # type: ignore[arg-type]
                              owner=owner)
    stderr().print(f"key {out.id} ({out.role}{', ' + out.owner if out.owner else ''}) "
                   "— store it now, it is not shown again")
    typer.echo(key)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    from earmark.service.access import list_keys

    t = Table("id", "name", "role", "owner", "created", "revoked")
    for k in list_keys(_db(db)):
        t.add_row(k.id, k.name, k.role, k.owner or "",
                  k.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                  "yes" if k.revoked else "")
    stdout().print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: str, db: DbOption = None) -> None:
    from earmark.service.access import revoke_key

    with user_errors():
        revoke_key(_db(db), key_id, actor="cli")
    stderr().print(f"key {key_id} revoked")


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="moderator, owner or admin")] = "moderator",
    owner: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from stdin instead of a prompt.")] = False,
    db: DbOption = None,
) -> None:
    """Create a login (or reset its password)."""
    from earmark.service.access import add_user

    pw = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("password: ")
    with user_errors():
        add_user(_db(db), name=name, password=pw, role=role,  # type: ignore[arg-type]
                 owner=owner)
    stderr().print(f"user {name} ({role}) saved")


@audit_app.command("verify")
def audit_verify(db: DbOption = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recompute the hash chain; exit 1 and name the first bad entry if it is broken."""
    from earmark.moderation.audit import verify

    database = _db(db)
    with database.reader() as s:
        v = verify(s)
    if as_json:
        typer.echo(json.dumps(v.__dict__))
    elif v.ok:
        stderr().print(f"audit chain intact: {v.entries} entries, head {v.head[:16]}…")
    else:
        stderr().print(f"[red]audit chain broken[/] at entry {v.first_bad}: {v.problem}")
    raise typer.Exit(0 if v.ok else 1)


def _body(path: Path) -> PolicyBody:

    try:
        return PolicyBody.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        die(f"bad policy file {path}: {exc}")


@policy_app.command("set")
def policy_set(owner: str, path: Annotated[Path, typer.Argument(metavar="POLICY.json")],
               db: DbOption = None) -> None:
    """Save POLICY.json as OWNER's next version."""
    from earmark.service.policies import save_policy

    out = save_policy(_db(db), owner=owner, body=_body(path), actor="cli")
    stderr().print(f"policy of {owner}: version {out.version}")


@policy_app.command("show")
def policy_show(owner: Annotated[str | None, typer.Argument()] = None,
                db: DbOption = None) -> None:
    """Print the current policies (or every version of OWNER's) as JSON."""
    from earmark.service.policies import list_policies

    rows = list_policies(_db(db), owner=owner)
    typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))


@policy_app.command("simulate")
def policy_simulate(
    owner: str, path: Annotated[Path, typer.Argument(metavar="POLICY.json")],
    last: Annotated[int, typer.Option(help="Replay this many recent scans.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False, db: DbOption = None,
) -> None:
    """Replay a draft policy over the last N scans before it goes live (nothing is saved)."""
    from earmark.service.policies import simulate

    out = simulate(_db(db), owner=owner, body=_body(path), last=last)
    if as_json:
        typer.echo(out.model_dump_json())
        return
    t = Table("action", "now", "with the draft")
    for a in sorted(set(out.before) | set(out.after)):
        t.add_row(a, str(out.before.get(a, 0)), str(out.after.get(a, 0)))
    stdout().print(t)
    stderr().print(f"{out.changed} of {out.scans} scans would change")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Apply any pending migrations (serve and worker also do it on start)."""
    _db(db)
    stderr().print("service database is at the newest schema")
