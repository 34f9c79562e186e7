"""A run's job: what the CLI's Hydra main and the Python API (:mod:`ftbnn_exp.api`) share.

The CLI checks its overrides (:func:`~ftbnn_exp.app.sweeps.check_overrides`), lets
``@hydra.main`` make the job's context (its run folder, ``.hydra/`` files, ``${hydra:...}``)
and calls :func:`run_job`. The API does the same with Hydra's compose API
(:func:`compose_job`): the same check, the same configs, the same context and the same
:func:`run_job`, so a notebook's run is a run folder like the shell's, which ``report`` reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from ftbnn_exp.app.compose import CONF_DIR
from ftbnn_exp.app.multistep import run_multistep
from ftbnn_exp.app.run import RunPlace, train_run
from ftbnn_exp.app.storage import LOCK, check_writable
from ftbnn_exp.app.sweeps import check_overrides
from ftbnn_exp.artifacts import Metric, RunFolder
from ftbnn_exp.errors import UserError

JOB_NAME = "ftbnn_exp"
HYDRA_FILES = ".hydra"
"""Hydra's record of a job: ``config.yaml``, ``hydra.yaml``, ``overrides.yaml``."""


def run_job(cfg: DictConfig, place: RunPlace) -> dict[str, Any] | None:
    """One job: a multi-step pipeline (``experiment=kd_multistep``, Table 1's KD rows) or one
    training run; its ``metrics.json`` payload."""
    if cfg.get("kd"):
        return run_multistep(cfg, place)
    return train_run(cfg, place)


def discard_failed(run_dir: Path) -> bool:
    """Remove a run folder that a config error stopped before anything trained: it holds only
    Hydra's files and a ``failed`` record without history (a refused resume keeps its earlier
    record, so a folder with a past is never removed). The folder above goes too if that
    leaves it empty (``outputs/<run name>/``). Whether it was removed."""
    try:
        record = json.loads(RunFolder(run_dir).metrics_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if (not isinstance(record, dict) or record.get(Metric.STATUS) != "failed"
            or record.get(Metric.HISTORY)):
        return False
    kept = {HYDRA_FILES, RunFolder.METRICS, LOCK, f"{JOB_NAME}.log", "cli.log", "__main__.log"}
    if any(path.name not in kept for path in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # only when empty
    except OSError:
        pass
    return True


def compose_job(overrides: Sequence[str], run_dir: str | Path | None = None
                ) -> tuple[DictConfig, RunPlace]:
    """The config of ``overrides`` (checked as the CLI checks them) and its job context: the
    run folder (``run_dir``, else ``hydra.run.dir`` as the CLI resolves it), Hydra's config
    files in it, ``${hydra:...}`` resolvable while the job runs."""
    overrides = list(overrides)
    check_overrides(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3",
                               job_name=JOB_NAME):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    folder = Path(run_dir if run_dir is not None else cfg.hydra.run.dir)
    check_writable(folder)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(folder.absolute())
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    files = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
             "overrides.yaml": OmegaConf.create(overrides)}

    def describe() -> None:
        """Hydra's files, written once the run owns its folder (a run refused by the owner's
        lock leaves the owner's description as it was)."""
        saved = folder / HYDRA_FILES
        saved.mkdir(parents=True, exist_ok=True)
        for name, node in files.items():
            OmegaConf.save(node, saved / name)

    return cfg, RunPlace(folder, hydra_cfg.runtime.choices.get("experiment"), describe)


def recorded_overrides(run_dir: Path) -> list[str]:
    """The overrides a run folder was made with (its ``.hydra/overrides.yaml``)."""
    path = run_dir / HYDRA_FILES / "overrides.yaml"
    if not path.is_file():
        raise UserError(f"'{run_dir}' is not a run folder of this framework (no "
                        f"{HYDRA_FILES}/overrides.yaml)")
    saved = OmegaConf.load(path)
    if not OmegaConf.is_list(saved) or not all(isinstance(o, str) for o in saved):
        raise UserError(f"{path} is not a list of overrides")
    return list(saved)


def merged_overrides(earlier: Sequence[str], later: Sequence[str]) -> list[str]:
    """``earlier`` with each key that ``later`` sets replaced (Hydra refuses a key given
    twice), in order."""
    parser = OverridesParser.create()
    try:
        keys = [o.key_or_group for o in parser.parse_overrides(list(later))]
    except Exception as error:
        raise UserError(f"overrides {list(later)}: {' '.join(str(error).split())}") from None
    kept = [o for o, parsed in zip(earlier, parser.parse_overrides(list(earlier)), strict=True)
            if parsed.key_or_group not in keys]
    return [*kept, *later]


@dataclass(frozen=True)
class Outcome:
    """What one job left: its ``metrics.json`` record and its run folder."""

    record: dict[str, Any]
    folder: Path


def run_overrides(overrides: Sequence[str], run_dir: str | Path | None = None) -> Outcome:
    """Compose, check and run one job as the CLI does; a config error leaves no folder."""
    cfg, place = compose_job(overrides, run_dir)
    try:
        record = run_job(cfg, place)
    except UserError:
        discard_failed(place.run_dir)
        raise
    if record is None:  # a pipeline whose teacher did not complete
        raise UserError(f"{place.run_dir}: the distillation teacher did not complete; see "
                        f"{RunFolder(place.run_dir / 'teacher').metrics_file}")
    return Outcome(record, place.run_dir)
