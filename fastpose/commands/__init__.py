"""Sub-commands of the ``fastpose`` command line; each module exposes ``add_parser(subparsers)``.

:class:`CommandError` is the error a command raises for a user's mistake (a bad value, a missing or
unwritable path): :func:`fastpose.cli.main` prints its message as one line and exits with status 2.
This package imports nothing heavy: the parsers are built from it before torch is imported.
"""

from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A user error of a command: the message says what was wrong, with what value, and what to do."""
