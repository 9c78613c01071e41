"""The ``user-limits`` command line.

Every command takes ``--store URL``. Bad input gives one clear line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

# Each module registers its commands on ``app``.
from user_limits.cli import build_lambda as _build_lambda  # noqa: F401
from user_limits.cli import check_config as _check_config  # noqa: F401
from user_limits.cli import dead_letter_commands as _dead_letter_commands  # noqa: F401
from user_limits.cli import drift_command as _drift_command  # noqa: F401
from user_limits.cli import lease_commands as _lease_commands  # noqa: F401
from user_limits.cli import migrate_command as _migrate_command  # noqa: F401
from user_limits.cli import parked_commands as _parked_commands  # noqa: F401
from user_limits.cli import projection_commands as _projection_commands  # noqa: F401
from user_limits.cli import recover_command as _recover_command  # noqa: F401
from user_limits.cli import serve_command as _serve_command  # noqa: F401
from user_limits.cli import snapshot_commands as _snapshot_commands  # noqa: F401
from user_limits.cli import store_commands as _store_commands  # noqa: F401
from user_limits.cli import stream_commands as _stream_commands  # noqa: F401
from user_limits.cli.app import app
from user_limits.cli.render import shown
from user_limits.errors import UserError

__all__ = ["app", "main"]


def main() -> None:
    try:
        # Not standalone: Click's usage errors come back here, to be printed as one line like every
        # other bad input, instead of Typer's boxed panel.
        code = app(standalone_mode=False)
    except UserError as error:
        _fail(str(error), 2)
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", 130)
    except Exception as error:
        if not _is_click_error(error):
            raise
        context = getattr(error, "ctx", None)
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        _fail(f"{error.format_message()}{hint}", getattr(error, "exit_code", 2))  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


def _is_click_error(error: Exception) -> bool:
    # Typer may vendor its own copy of Click: recognise its ClickException by name.
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__)


def _fail(message: str, code: int) -> NoReturn:
    # One line, and a path or value quoted in it cannot drive the terminal.
    print(f"user-limits: error: {shown(' '.join(message.split()))}", file=sys.stderr)
    sys.exit(code)
