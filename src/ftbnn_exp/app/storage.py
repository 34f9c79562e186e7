"""Where a run's files go: checked before training starts, found again on resume."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from torch import nn

from ftbnn_exp.errors import UserError

KEPT_CHECKPOINTS = 4
"""best.ckpt, last.ckpt, interrupted.ckpt and the one being written next to them."""
LOG_MARGIN = 64 * 2**20
"""Room for logs, metrics and configs beside the checkpoints."""


def check_writable(folder: str | Path) -> None:
    """Fail now, not after an epoch, when ``folder`` cannot be created or written."""
    target = Path(folder).absolute()
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise UserError(f"output directory {target} cannot be created: {existing} is not a "
                        f"folder; set hydra.run.dir (or hydra.sweep.dir) to a writable folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"output directory {target} is not writable ({error.strerror} in "
                        f"{existing}); set hydra.run.dir (or hydra.sweep.dir) to a writable "
                        f"folder") from None


def checkpoint_bytes(model: nn.Module) -> int:
    """A Lightning checkpoint of ``model`` trained with Adam: weights, two moments, buffers."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 3 * params + buffers


def check_free_space(run_dir: Path, model: nn.Module) -> None:
    need = KEPT_CHECKPOINTS * checkpoint_bytes(model) + LOG_MARGIN
    free = shutil.disk_usage(run_dir).free
    if free < need:
        raise UserError(f"only {free / 2**20:.0f} MB free under {run_dir}; this model's "
                        f"checkpoints need about {need / 2**20:.0f} MB; free space or set "
                        f"hydra.run.dir to another disk")


def resume_checkpoint(resume: str | None, run_dir: Path) -> Path | None:
    """The checkpoint a run continues from.

    ``auto``: the newest of the run directory's ``last.ckpt`` (end of an epoch: the resumed run
    equals an uninterrupted one exactly), ``interrupted.ckpt`` (Ctrl-C, SIGTERM, crash) and
    Lightning's SLURM ``hpc_ckpt_*.ckpt`` (mid-epoch: Lightning restarts that epoch's data
    iteration). ``never``: start fresh. A path: that checkpoint.
    """
    candidates = [run_dir / "checkpoints" / "last.ckpt",
                  run_dir / "checkpoints" / "interrupted.ckpt",
                  *run_dir.glob("hpc_ckpt_*.ckpt")]
    found = [path for path in candidates if path.is_file()]
    if resume in (None, "never"):
        if found:
            # Lightning itself would resume from them, and a fresh run would overwrite them.
            raise UserError(f"resume=never but {run_dir} already holds {found[0].name}; "
                            f"choose a new hydra.run.dir or use resume=auto")
        return None
    if resume == "auto":
        return max(found, key=lambda path: path.stat().st_mtime_ns) if found else None
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"resume={resume} is not a checkpoint file; allowed: auto, never or a "
                        f"path to a .ckpt")
    return path
