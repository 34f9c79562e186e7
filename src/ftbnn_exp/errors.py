"""Errors that are the user's to fix: the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A configuration, input or environment problem the user can fix; one line, no traceback."""


class InvalidArgument(UserError, ValueError):
    """A value a library was given that it cannot take (a config key's value, most often).

    Also a ``ValueError``, so library callers catch it the usual way; only the CLI turns it
    into a one-line message."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A data set's files are missing or laid out wrongly."""


class CorruptImageError(UserError):
    """An image file that cannot be decoded."""


def one_line_message(error: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker re-raised it with the
    worker's traceback folded into the message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    last = lines[-1]
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(error).__name__}: ")
