"""``python -m ftbnn_exp``: compose the config, build, train, validate, test, write metrics.json."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ftbnn_exp.build import (
    IMAGENET,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    measure,
    optimizer_spec,
    resolve_width,
    scheduler_spec,
    use_channels_last,
)
from ftbnn_exp.config import CONF_DIR, check_overrides, validate
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.training.artifacts import write_json_atomic
from ftbnn_exp.training.callbacks import RunRecord
from ftbnn_exp.training.module import ClassificationModule
from ftbnn_exp.training.storage import check_free_space, check_writable, resume_checkpoint


def _full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@rank_zero_only
def _say(message: str) -> None:
    print(message, flush=True)


def _fail(message: str, run_dir: Path | None = None, info: dict[str, Any] | None = None) -> None:
    """Report a user mistake in one line. A multirun records it and goes on to the next job.
    Without ``run_dir`` the run's own record (RunRecord) has already written metrics.json."""
    print(f"error: {message}", file=sys.stderr)
    if run_dir is not None:
        write_json_atomic(run_dir / "metrics.json",
                          {**(info or {}), "status": "failed", "error": message})
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        sys.exit(2)


def nonlinearity_label(cfg: DictConfig) -> str:
    """The schedule the model really uses: Bi-Real and the fp ResNet ignore ``nonlinearity=``
    unless told otherwise."""
    if cfg.model.family == "fig2":
        return cfg.model.kind
    if cfg.model.family == "resnet_fp" or (
        cfg.model.family == "bireal" and not cfg.model.explicit_nonlinearity):
        return "none"
    return cfg.nonlinearity.name


def describe(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    choices = HydraConfig.get().runtime.choices
    return {
        "run_name": cfg.run_name,
        "experiment": choices.get("experiment"),
        "row": cfg.get("row"),
        "model": cfg.model.name,
        "nonlinearity": nonlinearity_label(cfg),
        "data": cfg.data.name,
        "depth": cfg.depth,
        "groups": cfg.groups if cfg.model.family == "derived" else None,
        "seed": cfg.seed,
        "run_dir": str(run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def train(cfg: DictConfig) -> dict[str, Any] | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    info = describe(cfg, run_dir)
    try:
        validate(cfg)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg)
        datamodule.use_run_dir(run_dir)
        datamodule.prepare_data()
        datamodule.setup("fit")
        choice = resolve_width(cfg)
        width = choice.width if choice else cfg.width
        if choice:
            _say(f"width solver: {choice.describe()}")
        model = build_model(cfg, datamodule.spec, width)
        info["width"] = width
        info["complexity"] = measure(cfg, datamodule.spec, width).totals()
        info["complexity_imagenet"] = measure(cfg, IMAGENET, width).totals()
        check_free_space(run_dir, model)
        checkpoint = resume_checkpoint(cfg.resume, run_dir)
    except (UserError, ValueError) as error:
        if _full_errors():
            raise
        _fail(str(error), run_dir, info)
        return None

    if cfg.compile:
        model.compile()
    record = RunRecord(run_dir / "metrics.json", info, resuming=checkpoint is not None)
    loggers = build_loggers(cfg, run_dir)
    trainer = build_trainer(cfg, build_callbacks(run_dir, [record], bool(loggers)), loggers,
                            run_dir)
    info["world_size"] = record.info["world_size"] = trainer.world_size
    module = ClassificationModule(model, datamodule.spec.num_classes,
                                  optimizer_spec(cfg, trainer.world_size), scheduler_spec(cfg),
                                  metadata=info, channels_last=use_channels_last(cfg))
    for logger in trainer.loggers:
        logger.log_hyperparams({**info["config"], "width": info["width"],
                                "complexity": info["complexity"],
                                "complexity_imagenet": info["complexity_imagenet"]})
    if checkpoint is not None:
        _say(f"resuming from {checkpoint}")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint)
        if module.diverged_at_epoch is None or cfg.test_weights == "best":
            weights = "best" if cfg.test_weights == "best" else None
            trainer.test(module, datamodule=datamodule, ckpt_path=weights, verbose=False)
    except SIGTERMException:
        print(f"{cfg.run_name}: stopped by SIGTERM; state saved in {run_dir}/checkpoints/"
              f"interrupted.ckpt; the same command with hydra.run.dir={run_dir} resumes",
              file=sys.stderr)
        sys.exit(143)
    except UserError as error:
        if _full_errors():
            raise
        _fail(one_line_message(error))
        return None
    skipped = datamodule.skipped_samples()
    if skipped:
        record.info["skipped_images"] = len(skipped)
        record.write(module)
        _say(f"skipped {len(skipped)} unreadable images, listed in "
             f"{datamodule.skipped_log}")
    result = record.payload(module)
    final = result["final"]
    top1, top5 = final.get("test/top1"), final.get("test/top5")
    scores = (f"test top-1 {top1:.2f}%  top-5 {top5:.2f}%" if top1 is not None
              else "not tested")
    _say(f"{cfg.run_name}: {scores}  [{result['status']}, {result['epochs_run']} epochs] "
         f"-> {run_dir / 'metrics.json'}")
    return result


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    train(cfg)


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
    if plain_run and not _full_errors():
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
