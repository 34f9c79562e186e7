"""``python -m ftbnn_exp``: compose the config, build, train, validate, test, write metrics.json."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ftbnn_exp.config import CONF_DIR, check_overrides
from ftbnn_exp.errors import UserError
from ftbnn_exp.multistep import run_multistep
from ftbnn_exp.run import RunPlace, full_errors, train_run
from ftbnn_exp.training.storage import check_writable


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    place = RunPlace(Path(hydra_cfg.runtime.output_dir),
                     hydra_cfg.runtime.choices.get("experiment"),
                     hydra_cfg.mode == RunMode.MULTIRUN)
    if cfg.get("kd"):
        run_multistep(cfg, place)
    else:
        train_run(cfg, place)


def output_root(overrides: list[str], multirun: bool) -> str:
    """Where Hydra will create this command's run directories (``${...}`` parts cut off)."""
    key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    given = next((o.removeprefix(key) for o in overrides if o.startswith(key)), None)
    folder = (given or ("multirun" if multirun else "outputs")).strip("'\"")
    return folder.split("${", 1)[0] or "."


def main() -> None:
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


if __name__ == "__main__":
    main()
