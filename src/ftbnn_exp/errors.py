"""Errors that are the user's to fix: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A configuration, input or environment problem the user can fix; one line, no traceback."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set's files are missing or laid out wrongly."""
