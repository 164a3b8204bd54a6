# SPDX-License-Identifier: Apache-2.0
"""The ``earmark`` command line: a Typer app, one module per command group.

Helpers shared by the command modules live here: the ``--db`` option, the stderr console
(progress and summaries go to stderr so that stdout stays pipeable JSON) and the one-line
error exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from earmark.config import Settings, get_settings
from earmark.errors import EarmarkError

DbOption = Annotated[
    Path | None,
    typer.Option("--db", metavar="DIR",
                 help="Catalog folder. Default: $EARMARK_HOME, else ./earmark-data."),
]
MaxSecondsOption = Annotated[
    float | None,
    typer.Option("--max-seconds", metavar="S",
                 help="Refuse inputs longer than this. Default: $EARMARK_MAX_SECONDS or 4 h."),
]
AddressOption = Annotated[
    str | None,
    typer.Option("--address", metavar="HOST:PORT",
                 help="Serve the index shards from Ray actors on this cluster ('local': a "
                      "private one). Default: $EARMARK_RAY_ADDRESS, else in this process."),
]

EXIT_FAILED = 1  #: nothing succeeded
EXIT_ERROR = 2  #: the command could not run (no catalog, bad manifest, ...)


def stderr() -> Console:
    """A console on stderr that never wraps or colours what it is given by accident."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout(file: IO[str] | None = None) -> Console:
    """A console on stdout (or ``file``) for tables; wide when it is a file or a pipe."""
    c = Console(highlight=False, file=file)
    return c if c.is_terminal else Console(highlight=False, width=160, file=file)


def load_settings(**overrides: Any) -> Settings:
    """The settings with the command's options on top; a bad value is a one-line error."""
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        bad = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
                        for e in exc.errors())
        die(f"bad setting ({bad}); check the option or the EARMARK_* environment variable")


def resolve_home(db: Path | None) -> Path:
    """``--db`` if given, else the settings' home (``$EARMARK_HOME``, else ./earmark-data)."""
    return db if db is not None else load_settings().home


def die(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    typer.echo("error: " + " ".join(str(message).split()), err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`EarmarkError` into a one-line message and exit code 2."""
    try:
        yield
    except EarmarkError as exc:
        die(exc.reason)


def clock(ms: float) -> str:
    """``m:ss.s`` of a time in milliseconds (``h:mm:ss`` from an hour on)."""
    h, rest = divmod(ms / 1000, 3600)
    m, sec = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{sec:04.1f}" if h else f"{int(m)}:{sec:04.1f}"
