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


TRACEBACK = "Traceback (most recent call last):"


def one_line_message(error: BaseException) -> str:
    """The user-facing line of an error: its first line, which names the file or key and the
    reason (later lines are advice, such as torch.load's). When a DataLoader worker re-raised
    it with the worker's traceback folded into the message, the first line of the error that
    traceback ends in."""
    lines = str(error).splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().endswith(TRACEBACK)]
    if starts:  # a traceback's own lines are indented, the error it ends in is not
        lines = [line for line in lines[starts[-1] + 1:] if not line[:1].isspace()]
    first = next((line.strip() for line in lines if line.strip()), "")
    kind = type(error)
    return (first.removeprefix(f"{kind.__module__}.{kind.__name__}: ")
            .removeprefix(f"{kind.__name__}: ") or kind.__name__)
