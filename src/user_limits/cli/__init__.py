"""The ``user-limits`` command line.

Every command takes ``--store URL``. Bad input gives one clear line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import sys

# Each module registers its commands on ``app``.
from user_limits.cli import build_lambda as _build_lambda  # noqa: F401
from user_limits.cli import projection_commands as _projection_commands  # noqa: F401
from user_limits.cli import serve_command as _serve_command  # noqa: F401
from user_limits.cli import store_commands as _store_commands  # noqa: F401
from user_limits.cli import stream_commands as _stream_commands  # noqa: F401
from user_limits.cli.app import app
from user_limits.errors import UserError

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except UserError as error:
        print(f"user-limits: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("user-limits: interrupted", file=sys.stderr)
        sys.exit(130)
