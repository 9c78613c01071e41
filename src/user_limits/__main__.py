"""``python -m user_limits`` is the ``user-limits`` command."""

from user_limits.cli import main

main()
