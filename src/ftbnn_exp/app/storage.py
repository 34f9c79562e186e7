"""Where a run's files go: checked before training starts, found again on resume."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ftbnn_exp.artifacts import load_checkpoint
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


RESUME_KEYS = ("state_dict", "ftbnn_exp", "loops", "epoch", "optimizer_states")
"""What every checkpoint this framework's training writes holds."""


def checkpoint_candidates(run_dir: Path) -> list[Path]:
    """A run folder's checkpoints to resume from, newest first: ``last.ckpt`` (end of an
    epoch), ``interrupted.ckpt`` (Ctrl-C, SIGTERM, crash), the periodic ``step-*.ckpt``
    (``checkpoint.every_n_minutes`` / ``every_n_steps``) and Lightning's SLURM
    ``hpc_ckpt_*.ckpt``; each saves the loader's position, so any of them resumes exactly."""
    folder = run_dir / "checkpoints"
    found = [folder / "last.ckpt", folder / "interrupted.ckpt", *folder.glob("step-*.ckpt"),
             *run_dir.glob("hpc_ckpt_*.ckpt")]
    return sorted((p for p in found if p.is_file()), key=lambda p: p.stat().st_mtime_ns,
                  reverse=True)


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to resume from, and the resolved config of the run that wrote it."""

    path: Path
    config: dict[str, Any]


def resume_point(path: Path) -> tuple[ResumePoint | None, str | None]:
    """``path`` as a resume point (read once), or why it cannot be one (truncated,
    unreadable, not ours)."""
    try:
        checkpoint = load_checkpoint(path)
    except UserError as error:
        return None, " ".join(str(error).split())[:160]
    missing = [key for key in RESUME_KEYS if key not in checkpoint]
    if missing:
        return None, f"it lacks {', '.join(missing)}"
    return ResumePoint(path, checkpoint["ftbnn_exp"].get("config", {})), None


def resume_checkpoint(resume: str | None, run_dir: Path
                      ) -> tuple[ResumePoint | None, list[str]]:
    """The checkpoint a run continues from, and one line per candidate skipped and why.

    ``auto``: the newest good one of :func:`checkpoint_candidates` (a truncated or foreign
    file is skipped, named and reported); ``never``: start fresh; a path: that checkpoint,
    which must be good. No good candidate where some exist is an error: nothing is lost by
    starting over silently.
    """
    found = checkpoint_candidates(run_dir)
    if resume in (None, "never"):
        if found:
            # Lightning itself would resume from them, and a fresh run would overwrite them.
            raise UserError(f"resume=never but {run_dir} already holds {found[0].name}; "
                            f"choose a new hydra.run.dir or use resume=auto")
        return None, []
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise UserError(f"resume={resume} is not a checkpoint file; allowed: auto, never "
                            f"or a path to a .ckpt")
        point, problem = resume_point(path)
        if problem:
            raise UserError(f"resume={resume} cannot be resumed from: {problem}")
        return point, []
    skipped = []
    for path in found:
        point, problem = resume_point(path)
        if point is not None:
            return point, skipped
        skipped.append(f"resume: skipped {path} ({problem})")
    if found:
        raise UserError(f"resume=auto: no checkpoint in {run_dir} can be resumed from "
                        f"({'; '.join(s.removeprefix('resume: skipped ') for s in skipped)}); "
                        f"remove them or choose a new hydra.run.dir")
    return None, []


RUN_SHAPING = ("trainer.max_epochs", "trainer.accumulate_grad_batches",
               "optimizer", "scheduler", "model", "nonlinearity", "placement", "data.name",
               "data.root", "data.batch_size", "data.image_size", "augment", "seed", "depth",
               "groups", "width", "budget", "stage", "kd")
"""Keys whose change makes a resumed run a different run from the one its checkpoint began
(``trainer.max_steps`` only says where to stop: the schedule follows ``max_epochs``)."""
SCHEDULE_LENGTH = ("trainer.max_epochs",)
"""What ``resume_changes=rescale`` lets change: the schedule follows the new length."""


def _select(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def changed_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The run-shaping keys (leaves) whose values differ between two resolved configs."""
    def leaves(value: Any, prefix: str) -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items()
                    for k, v in leaves(item, f"{prefix}.{key}").items()}
        return {prefix: value}

    differ = []
    for key in RUN_SHAPING:
        before, after = leaves(_select(saved, key), key), leaves(_select(current, key), key)
        differ += [k for k in sorted(before.keys() | after.keys())
                   if before.get(k) != after.get(k)]
    return differ


def check_resume_config(point: ResumePoint, current: dict[str, Any], changes: str) -> bool:
    """Refuse a resume whose run-shaping config differs from the checkpoint's, naming the
    keys; ``changes=rescale`` accepts a new schedule length. True when the schedule is to be
    rescaled."""
    saved, checkpoint = point.config, point.path
    differ = changed_keys(saved, current)
    if not differ:
        return False
    shown = ", ".join(f"{k} ({_select(saved, k)!r} -> {_select(current, k)!r})"
                      for k in differ[:6])
    if changes == "rescale" and set(differ) <= set(SCHEDULE_LENGTH):
        return True
    hint = (" or resume_changes=rescale to continue with the schedule rescaled to the new "
            "length" if set(differ) <= set(SCHEDULE_LENGTH) else "")
    raise UserError(f"resume from {checkpoint}: {shown} differ from the checkpoint's run; "
                    f"start a new run folder (hydra.run.dir=...){hint}")
