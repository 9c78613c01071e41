"""Errors meant for the person at the terminal: printed as one line, never as a traceback."""


class UserError(Exception):
    """Bad input or an unusable store; the message says what and where."""
