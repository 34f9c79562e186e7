"""One training run: build from the config, fit, test, write ``metrics.json``.

Used by ``python -m ftbnn_exp`` (one run per Hydra job) and by the multi-step pipeline (one run
per stage). Knows nothing of Hydra: the caller says where the run goes and whether a failure
should end the process.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ftbnn_exp.build import (
    IMAGENET,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_teacher,
    build_trainer,
    distillation_spec,
    measure,
    optimizer_spec,
    resolve_width,
    scheduler_spec,
    use_channels_last,
)
from ftbnn_exp.checkpoints import load_checkpoint, model_weights
from ftbnn_exp.config import validate
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.nn import set_binarization
from ftbnn_exp.training.artifacts import write_json_atomic
from ftbnn_exp.training.callbacks import RunRecord
from ftbnn_exp.training.distillation import STAGE_MODES, DistillationModule
from ftbnn_exp.training.module import ClassificationModule
from ftbnn_exp.training.storage import check_free_space, resume_checkpoint


@dataclass(frozen=True)
class RunPlace:
    """Where a run writes, what it is called in reports, and how a failure ends."""

    run_dir: Path
    experiment: str | None = None
    multirun: bool = False


def full_errors() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@rank_zero_only
def say(message: str) -> None:
    print(message, flush=True)


def fail(message: str, place: RunPlace, info: dict[str, Any] | None = None) -> None:
    """Report a user mistake in one line. A multirun records it and goes on to the next job.
    Without ``info`` the run's own record (RunRecord) has already written metrics.json."""
    print(f"error: {message}", file=sys.stderr)
    if info is not None:
        write_json_atomic(place.run_dir / "metrics.json",
                          {**info, "status": "failed", "error": message})
    if not place.multirun:
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


def describe(cfg: DictConfig, place: RunPlace) -> dict[str, Any]:
    return {
        "run_name": cfg.run_name,
        "experiment": place.experiment,
        "row": cfg.get("row"),
        "model": cfg.model.name,
        "nonlinearity": nonlinearity_label(cfg),
        "data": cfg.data.name,
        "depth": cfg.depth,
        "groups": cfg.groups if cfg.model.family == "derived" else None,
        "seed": cfg.seed,
        "run_dir": str(place.run_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights and buffers (shows which weights a stage started
    from)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_weights(model: nn.Module, checkpoint_path: str | Path) -> None:
    """The model weights of a training checkpoint of this framework."""
    try:
        checkpoint = load_checkpoint(checkpoint_path)
    except UserError as error:
        raise UserError(f"init_from={checkpoint_path}: {error}") from None
    try:
        model.load_state_dict(model_weights(checkpoint))
    except RuntimeError as error:
        raise UserError(f"init_from={checkpoint_path} does not fit this model: "
                        f"{' '.join(str(error).split())[:300]}") from None


def train_run(cfg: DictConfig, place: RunPlace, stage: int | None = None,
              init_from: str | Path | None = None) -> dict[str, Any] | None:
    """Train and test one model; ``stage`` sets the multi-step binarization (Appendix C) and
    ``init_from`` the starting weights. Returns the ``metrics.json`` payload (None on a user
    error in a multirun)."""
    run_dir = place.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    info = describe(cfg, place)
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
            say(f"width solver: {choice.describe()}")
        model = build_model(cfg, datamodule.spec, width)
        if stage is not None:
            set_binarization(model, *STAGE_MODES[stage])
            info["stage"] = stage
        if init_from is not None:
            load_weights(model, init_from)
            info["init"] = {"from": str(init_from), "fingerprint": fingerprint(model)}
        teacher = build_teacher(cfg, datamodule.spec) if cfg.get("kd") else None
        info["width"] = width
        info["complexity"] = measure(cfg, datamodule.spec, width).totals()
        info["complexity_imagenet"] = measure(cfg, IMAGENET, width).totals()
        check_free_space(run_dir, model)
        checkpoint = resume_checkpoint(cfg.resume, run_dir)
    except (UserError, ValueError) as error:
        if full_errors():
            raise
        fail(str(error), place, info)
        return None

    if cfg.compile:
        model.compile()
    record = RunRecord(run_dir / "metrics.json", info, resuming=checkpoint is not None)
    loggers = build_loggers(cfg, run_dir)
    trainer = build_trainer(cfg, build_callbacks(run_dir, [record], bool(loggers)), loggers,
                            run_dir)
    info["world_size"] = record.info["world_size"] = trainer.world_size
    common = {"optimizer": optimizer_spec(cfg, trainer.world_size),
              "scheduler": scheduler_spec(cfg), "metadata": info,
              "channels_last": use_channels_last(cfg)}
    module = (DistillationModule(model, datamodule.spec.num_classes, teacher,
                                 distillation_spec(cfg), **common) if teacher is not None
              else ClassificationModule(model, datamodule.spec.num_classes, **common))
    for logger in trainer.loggers:
        logger.log_hyperparams({**info["config"], "width": info["width"],
                                "complexity": info["complexity"],
                                "complexity_imagenet": info["complexity_imagenet"]})
    if checkpoint is not None:
        say(f"resuming from {checkpoint}")
    try:
        with warnings.catch_warnings():
            # With OnExceptionCheckpoint, Lightning looks for a last checkpoint itself and warns
            # on every fresh run; resume_checkpoint has already decided.
            warnings.filterwarnings("ignore", message=r".*there is no last checkpoint available")
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
        if full_errors():
            raise
        fail(one_line_message(error), place)
        return None
    skipped = datamodule.skipped_samples()
    if skipped:
        record.info["skipped_images"] = len(skipped)
        say(f"skipped {len(skipped)} unreadable images, listed in "
             f"{datamodule.skipped_log}")
    record.info["final_fingerprint"] = fingerprint(model)
    record.write(module)
    result = record.payload(module)
    final = result["final"]
    top1, top5 = final.get("test/top1"), final.get("test/top5")
    scores = (f"test top-1 {top1:.2f}%  top-5 {top5:.2f}%" if top1 is not None
              else "not tested")
    say(f"{cfg.run_name}: {scores}  [{result['status']}, {result['epochs_run']} epochs] "
         f"-> {run_dir / 'metrics.json'}")
    return result
