"""``python -m ftbnn_exp``: compose the config, check it, run, print the last line.

The job itself is :func:`ftbnn_exp.app.session.run_job`, the one the Python API runs.

The only place that decides exit codes: 2 for a :class:`UserError` (one line on stderr, no
traceback unless ``HYDRA_FULL_ERROR=1``), 143 for SIGTERM (state saved, the same command
resumes). In a multirun a failed job, the user's error or a crash, is recorded (status failed
in its ``metrics.json``, one line on stderr) and the sweep goes on; the multirun then exits 1.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ftbnn_exp.app.compose import CONF_DIR, top_level_keys
from ftbnn_exp.app.console import quiet
from ftbnn_exp.app.run import RunPlace, describe, record_failure
from ftbnn_exp.app.session import discard_failed, run_job
from ftbnn_exp.app.storage import check_writable
from ftbnn_exp.app.sweeps import check_overrides, sweep_size
from ftbnn_exp.artifacts import INTERRUPTED, RunFolder, write_atomic
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.training.checkpoint_io import disk_full_named


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@dataclass
class Sweep:
    """The jobs of a multirun that ran in this process, for its exit code at the end."""

    ran: int = 0
    failed: list[Path] = field(default_factory=list)
    total: int | None = None  # jobs the command line makes, for "[3/9]"


SWEEP = Sweep()

HELP_WIDTH, HELP_INDENT = 100, 18
"""The help page's width, and the column where a group's options start."""


def group_options(group: str) -> list[str]:
    """A group's options as Hydra finds them (the package's configs, then those that
    ``hydra.searchpath`` adds); a subgroup's as ``sub/{a, b}``."""
    loader = GlobalHydra.instance().config_loader()
    options = sorted(loader.get_group_options(group, ObjectType.CONFIG))
    for sub in sorted(loader.get_group_options(group, ObjectType.GROUP)):
        options.append(f"{sub}/{{{', '.join(group_options(f'{group}/{sub}'))}}}")
    return options


def group_help(group: str) -> str:
    """``${ftbnn_exp.group:GROUP}`` in the help page (conf/hydra/help/ftbnn_exp.yaml): GROUP
    and its options, wrapped, read when ``--help`` runs so the page cannot drift from the
    configs (Hydra's own list shows every group, internal ones too, on unwrapped lines)."""
    return textwrap.fill(", ".join(group_options(group)), width=HELP_WIDTH,
                         initial_indent=f"  {group}=".ljust(HELP_INDENT),
                         subsequent_indent=" " * HELP_INDENT, break_on_hyphens=False)


OmegaConf.register_new_resolver("ftbnn_exp.group", group_help, replace=True)


HYDRA_SUBDIR = "hydra.output_subdir"
"""Hydra writes ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` there before the task
runs, so before the run folder's lock is taken: a second run refused by the lock would have
rewritten the owner's. :func:`main` turns Hydra's writing off (``hydra.output_subdir=null``)
and :func:`describe_later` writes the same files once the folder is owned."""
OUTPUT_SUBDIR: list[str | None] = [".hydra"]
"""The user's ``hydra.output_subdir`` (Hydra's default ``.hydra``; None: no files)."""


def take_output_subdir(argv: list[str]) -> list[str]:
    """``argv`` with ``hydra.output_subdir=null``, the user's value kept in
    :data:`OUTPUT_SUBDIR`."""
    kept = [arg for arg in argv if not arg.startswith(f"{HYDRA_SUBDIR}=")]
    given = [arg.partition("=")[2] for arg in argv if arg.startswith(f"{HYDRA_SUBDIR}=")]
    if given:
        value = given[-1].strip("'\"")
        OUTPUT_SUBDIR[0] = None if value in ("null", "~", "") else value
    return [*kept, f"{HYDRA_SUBDIR}=null"]


def describe_later(cfg: DictConfig, run_dir: Path) -> Callable[[], None] | None:
    """Hydra's three files for this job, written (each whole) when called."""
    subdir = OUTPUT_SUBDIR[0]
    if subdir is None:
        return None
    # a plain copy (Hydra's own is read-only), its interpolations unresolved as Hydra saves it
    hydra_cfg = OmegaConf.create(OmegaConf.to_container(HydraConfig.instance().cfg))
    hydra_cfg.hydra.output_subdir = subdir
    files = {"config.yaml": cfg, "hydra.yaml": hydra_cfg,
             "overrides.yaml": hydra_cfg.hydra.overrides.task}

    def write() -> None:
        for name, node in files.items():
            path = run_dir / subdir / name
            text = OmegaConf.to_yaml(node).encode()
            with disk_full_named(path):
                write_atomic(path, lambda stream, text=text: stream.write(text))

    return write


def record_crash(cfg: DictConfig, place: RunPlace, error: Exception) -> str:
    """A job's error that is not the user's as a failed record in its ``metrics.json`` (a
    crash during training has written its own), and as one line."""
    message = f"{type(error).__name__}: {one_line_message(error)}"
    record_failure(RunFolder(place.run_dir), describe(cfg, place), message)
    return message


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    quiet()  # again: a job that a launcher such as SLURM runs elsewhere starts here, not in main
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    place = RunPlace(run_dir, hydra_cfg.runtime.choices.get("experiment"),
                     describe_later(cfg, run_dir))
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    SWEEP.ran += 1
    if multirun and hydra_cfg.launcher._target_.endswith("BasicLauncher"):  # jobs run here
        print(f"[{SWEEP.ran}/{SWEEP.total or '?'}] {place.run_dir}", flush=True)
    try:
        run_job(cfg, place)
    except SIGTERMException:
        saved = RunFolder(place.run_dir).checkpoint(INTERRUPTED)
        print(f"{cfg.run_name}: stopped by SIGTERM; state saved in {saved}; the same command "
              f"with hydra.run.dir={place.run_dir} resumes", file=sys.stderr)
        sys.exit(143)
    except Exception as error:
        user = isinstance(error, UserError)  # recorded by the run itself
        message = one_line_message(error) if user else record_crash(cfg, place, error)
        if full_errors() or not (user or multirun):
            raise  # a single run's crash shows its traceback
        if not multirun:
            if user:
                discard_failed(place.run_dir)  # a config error leaves no folder behind
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        print(f"error: {place.run_dir}: {message}", file=sys.stderr)
        SWEEP.failed.append(place.run_dir)
        if not hydra_cfg.launcher._target_.endswith("BasicLauncher"):
            raise  # a job that a launcher such as SLURM ran elsewhere fails the sweep so


def output_root(overrides: list[str], multirun: bool) -> str:
    """Where Hydra will create this command's run directories (``${...}`` parts cut off)."""
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    given = next((o.removeprefix(key) for o in overrides if o.startswith(key)), None)
    folder = (given or ("multirun" if multirun else "outputs")).strip("'\"")
    return folder.split("${", 1)[0] or "."


def completions(word: str) -> list[str] | None:
    """What tab completion offers for ``word`` where Hydra's own offers too little: options
    below a group's subfolder (``experiment=table3/...``, each row) and the registered
    part names for a model key that a family declares as a part (``model.binarizer=``,
    :func:`~ftbnn_exp.models.registry.part_arguments`); None: Hydra's answer."""
    key, equals, partial = word.partition("=")
    if not equals:
        return None
    from ftbnn_exp.models import part_arguments

    model_key = key.removeprefix("model.")
    parts = part_arguments() if model_key != key else {}
    if model_key in parts:
        from ftbnn_exp.nn.parts import PARTS

        names = sorted(PARTS[parts[model_key]])
    elif key in top_level_keys() and any(d.is_dir() for d in (CONF_DIR / key).glob("*")):
        folder = CONF_DIR / key
        names = sorted(p.relative_to(folder).with_suffix("").as_posix()
                       for p in folder.rglob("*.yaml"))
    else:
        return None
    return [f"{key}={name}" for name in names if name.startswith(partial)]


def complete_here() -> bool:
    """Answer Hydra's bash completion query (``-sc query=bash``, the line in ``COMP_LINE``)
    where :func:`completions` knows better; False: Hydra answers."""
    if sys.argv[1:] not in (["-sc", "query=bash"], ["--shell-completion", "query=bash"]):
        return False
    line = os.environ.get("COMP_LINE", "")
    words = line.split(" ")
    found = completions(words[-1]) if words else None
    if found is None:
        return False
    print(" ".join(found))
    return True


def main() -> None:
    if complete_here():
        return
    quiet()
    overrides = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    # Other Hydra flags (--cfg job, --help, ...) take values or print instead of running.
    plain_run = all(arg in ("-m", "--multirun") for arg in sys.argv[1:] if arg.startswith("-"))
    if plain_run and not full_errors():
        try:
            check_overrides(overrides)
            check_writable(output_root(overrides, multirun="-m" in sys.argv or
                                       "--multirun" in sys.argv))
        except UserError as error:
            print(f"error: {one_line_message(error)}", file=sys.stderr)
            sys.exit(2)
    SWEEP.total = sweep_size(overrides)
    sys.argv = [sys.argv[0], *take_output_subdir(sys.argv[1:])]
    _hydra_main()
    if SWEEP.failed:
        print(f"error: {len(SWEEP.failed)} of {SWEEP.ran} jobs failed (each error above; a job "
              f"refused before training keeps its earlier record and status): "
              f"{', '.join(str(d) for d in SWEEP.failed)}", file=sys.stderr)
        sys.exit(1)
