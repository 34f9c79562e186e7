"""Where a run's files go: checked before training starts, owned by one run at a time,
found again on resume."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from ftbnn_exp.artifacts import RunFolder, load_checkpoint
from ftbnn_exp.configs import ABSENT, config_diff
from ftbnn_exp.errors import UserError
from ftbnn_exp.training.checkpoint_io import disk_full_named

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
    """Fail before the first epoch when the run folder's disk cannot take this model's
    checkpoints. Those the folder already holds count as room, since they are rewritten in
    place: otherwise a run stopped by a full disk could not resume once space is freed."""
    need = KEPT_CHECKPOINTS * checkpoint_bytes(model) + LOG_MARGIN
    free = shutil.disk_usage(run_dir).free
    held = sum(path.stat().st_size for path in RunFolder(run_dir).checkpoint_files())
    if free + held < need:
        besides = f" besides the {held / 2**20:.0f} MB of its checkpoints" if held else ""
        raise UserError(f"only {free / 2**20:.0f} MB free under {run_dir}{besides}; this "
                        f"model's checkpoints need about {need / 2**20:.0f} MB; free space "
                        f"there or set hydra.run.dir to another disk")


def remove_orphans(run_dir: Path) -> None:
    """Remove the temporary files of writes that a kill cut short
    (:func:`~ftbnn_exp.artifacts.write_atomic` names them ``.<file>.<random>.tmp``). Only
    while the folder is owned: a live run's temporary files are still being written."""
    for orphan in [*run_dir.glob(".*.tmp"), *RunFolder(run_dir).checkpoints.glob(".*.tmp")]:
        orphan.unlink(missing_ok=True)


LOCK = "run.lock"
"""The file in a run folder that names the process owning it."""
RESERVE, RESERVE_BYTES = ".reserve.tmp", 2**20
"""Room a run holds in its folder for the last word of its ``metrics.json`` (``interrupted``)
when the disk fills up (:func:`free_reserve`); random bytes, which no file system compresses."""


def free_reserve(run_dir: Path) -> None:
    """Give the reserve back: at the end of the run, or for its record on a full disk."""
    (run_dir / RESERVE).unlink(missing_ok=True)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks after boot): tells a lock's owner from
    a later process given the same pid (a restarted container numbers pids from 1 again)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


def _still_running(owner: dict[str, Any]) -> bool:
    """Whether a lock's owner may still be running. An earlier incarnation of this SLURM job
    has ended (SLURM ends a job before requeueing it, on any node); a process on another host
    cannot be asked, so it counts as running; an unreadable lock has no owner."""
    me, pid = _this_process(), owner.get("pid")
    if not owner or (me["slurm_job"] and owner.get("slurm_job") == me["slurm_job"]
                     and owner.get("slurm_restart", 0) < me["slurm_restart"]):
        return False
    if owner.get("host") != me["host"]:
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    recorded, now = owner.get("process_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


def _read_owner(handle: int) -> dict[str, Any]:
    try:
        owner = json.loads(os.pread(handle, 4096, 0))
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _in_use(run_dir: Path, owner: dict[str, Any], hint: str = "") -> UserError:
    return UserError(f"run folder {run_dir} is in use by pid {owner.get('pid', '?')} on "
                     f"{owner.get('host', '?')} (since {owner.get('started', '?')}); wait for "
                     f"that run to end or choose another hydra.run.dir{hint}")


def _open_locked(lock: Path) -> int:
    """``lock`` opened and flocked by this process, refused when another process holds it.
    The flock ends with its process, so a live owner always holds it and a dead one never
    does (two runs cannot both take over one dead owner's lock); where the file system has no
    locks, the recorded owner decides alone."""
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(handle)
            os.close(handle)
            raise _in_use(lock.parent, owner) from None
        except OSError:
            pass  # no locks on this file system
        try:
            if os.stat(lock).st_ino == os.fstat(handle).st_ino:
                return handle
        except FileNotFoundError:
            pass
        os.close(handle)  # its owner removed it while we opened it: take the next one


@contextmanager
def own_run_folder(run_dir: Path) -> Iterator[None]:
    """Own ``run_dir`` while a run writes into it: a second run into the same folder is
    refused in one line instead of mixing its checkpoints and ``metrics.json`` with this
    one's. ``run.lock`` names the owner (host, pid, start); the lock of an owner that has died
    is taken over with a note. DDP's other processes work under rank zero's ownership. Once
    the folder is owned, temporary files of writes a kill cut short are removed and the
    :data:`RESERVE` is set aside."""
    if rank_zero_only.rank != 0:
        yield
        return
    lock = run_dir / LOCK
    handle = _open_locked(lock)
    try:
        previous = _read_owner(handle)
        if _still_running(previous):
            raise _in_use(run_dir, previous, f"; if no run is using it, delete {lock}")
        if previous:
            print(f"run folder {run_dir}: taking over {LOCK} of pid {previous.get('pid')} on "
                  f"{previous.get('host')} (since {previous.get('started')}), which has ended",
                  flush=True)
        with disk_full_named(lock):
            os.ftruncate(handle, 0)
            os.pwrite(handle, json.dumps(_this_process()).encode(), 0)
            os.fsync(handle)
    except BaseException:
        os.close(handle)
        raise
    try:
        remove_orphans(run_dir)
        with disk_full_named(run_dir / RESERVE):
            (run_dir / RESERVE).write_bytes(os.urandom(RESERVE_BYTES))
        yield
    finally:
        free_reserve(run_dir)
        lock.unlink(missing_ok=True)
        os.close(handle)


RESUME_KEYS = ("state_dict", "ftbnn_exp", "loops", "epoch", "optimizer_states")
"""What every checkpoint this framework's training writes holds."""


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

    ``auto``: the newest good one of :meth:`RunFolder.resume_candidates` (a truncated or foreign
    file is skipped, named and reported); ``never``: start fresh; a path: that checkpoint,
    which must be good. No good candidate where some exist is an error: nothing is lost by
    starting over silently.
    """
    found = RunFolder(run_dir).resume_candidates()
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
               "trainer.limit_train_batches", "trainer.limit_val_batches",
               "trainer.precision", "trainer.gradient_clip_val",
               "optimizer", "scheduler", "model", "nonlinearity", "placement", "data",
               "augment", "seed", "depth", "groups", "width", "budget", "budget_rate", "stage",
               "kd")
"""Keys whose change makes a resumed run a different run from the one its checkpoint began:
what it trains on (all of ``data`` but :data:`NOT_SHAPING`: split fractions, mean and std,
root, ...), how it steps and on how many batches, and what it validates on
(``trainer.max_steps`` only says where to stop: the schedule follows ``max_epochs``)."""
NOT_SHAPING = ("data.num_workers",)
"""Leaves of :data:`RUN_SHAPING` sections that change nothing a run draws or computes (each
sample's order, crops and flips come from (seed, epoch, index), whatever the workers)."""
SCHEDULE_LENGTH = ("trainer.max_epochs",)
"""What ``resume_changes=rescale`` lets change: the schedule follows the new length."""


def _select(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def _resumed_value(value: Any) -> Any:
    """A value as a resume compares it: by equality (1 and 1.0 are one setting), a key absent
    from an older checkpoint's config the same as null or ``{}`` (a key added since)."""
    return None if value is ABSENT or value == {} else value


def changed_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The run-shaping keys (leaves) whose values differ between two resolved configs, in
    :data:`RUN_SHAPING`'s order (the one config diff: :func:`ftbnn_exp.configs.config_diff`)."""
    diff = config_diff([saved, current], same=_resumed_value)
    differ = []
    for key in RUN_SHAPING:
        differ += sorted(k for k in diff if (k == key or k.startswith(f"{key}."))
                         and k not in NOT_SHAPING)
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
