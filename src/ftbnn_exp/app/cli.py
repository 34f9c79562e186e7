"""``python -m ftbnn_exp``: compose the config, check it, run, print the last line.

The only place that decides exit codes: 2 for a :class:`UserError` (one line on stderr, no
traceback unless ``HYDRA_FULL_ERROR=1``), 143 for SIGTERM (state saved, the same command
resumes). In a multirun a failed job is recorded and the sweep goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from ftbnn_exp.app.config import CONF_DIR, check_overrides
from ftbnn_exp.app.console import quiet
from ftbnn_exp.app.multistep import run_multistep
from ftbnn_exp.app.run import RunPlace, train_run
from ftbnn_exp.app.storage import check_writable
from ftbnn_exp.errors import UserError, one_line_message


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    place = RunPlace(Path(hydra_cfg.runtime.output_dir),
                     hydra_cfg.runtime.choices.get("experiment"))
    try:
        if cfg.get("kd"):
            run_multistep(cfg, place)
        else:
            train_run(cfg, place)
    except UserError as error:
        if full_errors():
            raise
        print(f"error: {one_line_message(error)}", file=sys.stderr)
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(2)
    except SIGTERMException:
        print(f"{cfg.run_name}: stopped by SIGTERM; state saved in {place.run_dir}/checkpoints/"
              f"interrupted.ckpt; the same command with hydra.run.dir={place.run_dir} resumes",
              file=sys.stderr)
        sys.exit(143)


def output_root(overrides: list[str], multirun: bool) -> str:
    """Where Hydra will create this command's run directories (``${...}`` parts cut off)."""
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    given = next((o.removeprefix(key) for o in overrides if o.startswith(key)), None)
    folder = (given or ("multirun" if multirun else "outputs")).strip("'\"")
    return folder.split("${", 1)[0] or "."


def main() -> None:
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
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
    _hydra_main()
