"""The Typer application and the options every command shares."""

from __future__ import annotations

from typing import Annotated

import typer

from user_limits.errors import UserError

app = typer.Typer(
    name="user-limits",
    help="Project a Kinesis stream of user-limit events into a read model, and serve it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="memory://, sqlite:///PATH, postgresql://… or dynamodb://TABLE "
        "[env USER_LIMITS_STORE; default sqlite:///user-limits.db]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def option_once(name: str, here: str | None, before: str | None) -> str | None:
    """An option given before the subcommand or after it (the same value if both)."""
    if here is not None and before is not None and here != before:
        raise UserError(f"{name} given twice, with different values ({before!r} and {here!r})")
    return here if here is not None else before
