"""The Typer application and the options every command shares."""

from __future__ import annotations

from typing import Annotated

import typer

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
