"""Errors that reach the user as one clear message instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix (a bad option, a missing file, missing weights).

    The CLI prints the message, which says what was wrong and what to do next, and exits with
    status 2; the library raises it wherever the fix is in the user's hands.
    """
