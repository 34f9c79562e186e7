"""Checkpoints that a kill or a full disk cannot tear.

Lightning's own writer saves into ``$TMPDIR`` and moves the file into the run folder; across
file systems that move is a copy, and a kill during it leaves a torn checkpoint (and a
temporary file nobody removes). Here each checkpoint goes through
:func:`~ftbnn_exp.artifacts.write_atomic`: a temporary file in the checkpoint's own folder,
fsynced and renamed over the old one, so the folder always holds the old whole file or the new
whole file. A temporary file left by a kill is removed at the run's next start
(:func:`ftbnn_exp.app.storage.remove_orphans`).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ftbnn_exp.artifacts import write_atomic
from ftbnn_exp.errors import UserError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
"""A full disk, or a full quota."""


class DiskFull(UserError):
    """No room for a run's file. The run stops as ``interrupted``: its last whole checkpoint
    is still there, and the same command resumes from it once there is space."""


def _no_space(error: BaseException | None) -> bool:
    """Whether ``error``, or one it arose from, is a full disk: torch.save's zip writer
    reports a failed write as a RuntimeError about the file position, with the OSError as its
    context."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@contextmanager
def disk_full_named(path: Path) -> Iterator[None]:
    """A full disk while writing ``path`` as one line naming the folder that is full, instead
    of Lightning's long traceback that names none."""
    try:
        yield
    except Exception as error:
        if not _no_space(error):
            raise
        raise DiskFull(f"no space left in {path.parent} while writing {path.name}; free space "
                       f"there, then rerun the same command to resume from the last whole "
                       f"checkpoint") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO, writing each checkpoint whole or not at all (see above)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        target = Path(path)
        with disk_full_named(target):
            write_atomic(target, lambda stream: torch.save(checkpoint, stream))
