"""Config → specs (by name) → objects: data module, model, complexity, loggers, trainer."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import timedelta
from netrc import netrc
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    OnExceptionCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from ftbnn_exp.app.config import RunSpecs
from ftbnn_exp.artifacts import (
    BEST,
    INTERRUPTED,
    LAST,
    STEP_NAME,
    Metric,
    RunFolder,
    check_tensors,
    data_module,
    load_checkpoint,
    load_weights_exactly,
    model_from_checkpoint,
    reason,
)
from ftbnn_exp.complexity import Complexity, WidthChoice, count_complexity, solve_width
from ftbnn_exp.complexity.counter import BOPS_PER_FLOP
from ftbnn_exp.data import ClassificationDataModule, DataSpec
from ftbnn_exp.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.models import ModelSpec, create, family, resnet_fp
from ftbnn_exp.nn import BinaryConv2d
from ftbnn_exp.training.callbacks import EpochLine, RedoInterruptedValidation, RngState
from ftbnn_exp.training.checkpoint_io import AtomicCheckpointIO
from ftbnn_exp.training.distillation import Normalization, teacher_input
from ftbnn_exp.training.optim import OptimizerSpec
from ftbnn_exp.training.progress import TrainingProgress

IMAGENET = DataSpec(image_size=224, in_channels=3, num_classes=1000)


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    try:
        return instantiate(cfg.data, _convert_="all")
    except InstantiationException as error:
        # a value the data module (or its augment=) refused: its own one-line message
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


def resolve_width(specs: RunSpecs, budget: float | None,
                  budget_rate: float = BOPS_PER_FLOP) -> WidthChoice | None:
    """Families with a solved width (the derived models), ``width`` unset: the solver's width
    for ``budget`` (built by the family's builder, counted in its convention), BOPs priced at
    ``budget_rate`` per FLOP (the paper's 64 by default)."""
    if not specs.family.solved_width or specs.model_kwargs.get("width") is not None:
        return None
    if budget is None:
        raise UserError(f"model family {specs.family.name} needs width=N or budget=M (e.g. "
                        f"budget=90 or budget=135)")
    return solve_width(specs.family, specs.model_kwargs, float(budget),
                       specs.family.convention, rate=float(budget_rate))


def with_data_shape(name: str, kwargs: Mapping[str, Any], data: DataSpec) -> dict[str, Any]:
    """``kwargs`` with the data's size, channels and classes, where family ``name``'s builder
    takes them (Fig. 2's models take no image size)."""
    parameters = family(name).parameters
    return {**kwargs, **{k: v for k, v in asdict(data).items() if k in parameters}}


def model_spec(cfg: DictConfig, specs: RunSpecs, data: DataSpec,
               width: WidthChoice | None = None) -> ModelSpec:
    """The model's spec, by name: the yaml's arguments, the data's shape where the builder takes
    it, the schedule, the solved width; plug-in modules to import first."""
    kwargs = with_data_shape(specs.family.name, specs.model_kwargs, data)
    if specs.schedule is not None:
        kwargs["schedule"] = specs.schedule.to_dict()
    if width is not None:
        kwargs["width"] = width.width
    return ModelSpec(specs.family.name, kwargs, tuple(cfg.get("plugins") or ()))


def build_model(spec: ModelSpec, lean_backward: bool = True) -> nn.Module:
    """The model of ``spec``; ``lean_backward`` trains binary blocks through nn/lean.py."""
    model = create(spec)
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.lean_backward = lean_backward
    return model


def build_teacher(cfg: DictConfig, data: DataSpec) -> tuple[nn.Module, Normalization | None]:
    """The distillation teacher of ``kd.teacher`` and the input normalisation its weights
    expect: ``torchvision`` (its ImageNet ResNet-18: ImageNet's mean and std) or a checkpoint
    path: a run of this framework (e.g. ``model=resnet18_fp``; its data's normalisation) or a
    plain torchvision ResNet-18 state dict (torchvision's convention: ImageNet's). Offline,
    train the teacher here first."""
    source = str(cfg.kd.teacher)
    if source == "torchvision":
        if (data.in_channels, data.num_classes) != (3, 1000):
            raise UserError(f"kd.teacher=torchvision is an ImageNet model (3 channels, 1000 "
                            f"classes); for data={cfg.data.name} set kd.teacher=<last.ckpt of "
                            f"a model=resnet18_fp run on it>")
        try:
            return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1), IMAGENET_NORMALIZATION
        except (OSError, RuntimeError) as error:
            raise UserError(f"kd.teacher=torchvision: the ImageNet weights could not be "
                            f"downloaded ({' '.join(str(error).split())[:160]}); set "
                            f"kd.teacher=<checkpoint of a resnet18_fp run>") from None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"kd.teacher={source} is not a file; allowed: torchvision or a "
                        f"checkpoint path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"kd.teacher={source} cannot be read: {reason(error)}") from None
    check_tensors(checkpoint, f"kd.teacher={source}")
    if isinstance(checkpoint, dict) and "ftbnn_exp" in checkpoint:
        checkpoint = load_checkpoint(path)
        return model_from_checkpoint(checkpoint), _trained_on(checkpoint["ftbnn_exp"])
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise UserError(f"kd.teacher={source} is neither a checkpoint of this framework nor a "
                        f"ResNet-18 state dict")
    teacher = resnet_fp(18, data.in_channels, data.num_classes, data.image_size)
    load_weights_exactly(teacher, checkpoint, f"kd.teacher={source} (data={cfg.data.name})")
    return teacher, IMAGENET_NORMALIZATION


IMAGENET_NORMALIZATION: Normalization = (IMAGENET_MEAN, IMAGENET_STD)
"""torchvision's ImageNet weights expect ``(pixel − mean) / std`` with ImageNet's values."""


def _trained_on(metadata: dict[str, Any]) -> Normalization | None:
    """The input normalisation of the data a checkpoint of this framework was trained on; a
    data config that names no registered data source is refused (its teacher would be fed
    inputs normalised some other way, silently), one whose files are not here gives None."""
    try:
        return data_module(metadata).pixel_normalization()
    except UserError as error:
        raise UserError(f"kd.teacher: the normalisation its weights expect is unknown "
                        f"({one_line_message(error)}); allowed: a checkpoint of this "
                        f"framework whose data is a registered data source") from None
    except (OSError, ValueError):
        return None


def distillation_teacher(cfg: DictConfig, datamodule: ClassificationDataModule) -> nn.Module:
    """:func:`build_teacher`, fed what its weights expect whatever ``augment=`` the student
    uses (:func:`teacher_input`); one line where that cannot be known."""
    teacher, expected = build_teacher(cfg, datamodule.spec)
    student = datamodule.pixel_normalization()
    try:
        return teacher_input(teacher, student, expected)
    except ValueError as error:
        raise UserError(f"kd.teacher={cfg.kd.teacher} expects inputs normalised as "
                        f"{expected}, data={cfg.data.name} gives {student}: {error}") from None


def convention_for(cfg: DictConfig, specs: RunSpecs) -> str:
    """``convention`` if set, else the family's own (``paper`` for the derived models, Table 4's
    convention; ``macs`` for the others)."""
    return cfg.convention or specs.family.convention


def measure(spec: ModelSpec, data: DataSpec, convention: str) -> Complexity:
    """The traced complexity of ``spec``'s model at ``data``'s size (e.g. ImageNet's)."""
    model = create(ModelSpec(spec.family, with_data_shape(spec.family, spec.kwargs, data),
                             spec.imports))
    return count_complexity(model, (data.in_channels, data.image_size, data.image_size),
                            convention)


def global_batch(cfg: DictConfig, world_size: int) -> int:
    return cfg.data.batch_size * world_size * cfg.trainer.accumulate_grad_batches


def scaled_optimizer(cfg: DictConfig, spec: OptimizerSpec, world_size: int = 1
                     ) -> OptimizerSpec:
    """``spec``, with ``optimizer.scale_lr`` its lr grown linearly with the global batch over
    ``reference_batch`` (off by default: the paper does not scale)."""
    if not cfg.optimizer.get("scale_lr"):
        return spec
    return replace(spec, lr=spec.lr * global_batch(cfg, world_size) /
                   cfg.optimizer.reference_batch)


def _wandb_offline_reason() -> str | None:
    """Why W&B cannot log online here (``WANDB_MODE``, no API key, no network), or None."""
    mode = os.environ.get("WANDB_MODE")
    if mode in ("offline", "disabled"):
        return f"WANDB_MODE={mode}"
    host = "api.wandb.ai"
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc().authenticators(host) is not None
        except (FileNotFoundError, OSError, ValueError):
            has_key = False
    if not has_key:
        return "no API key (WANDB_API_KEY or `wandb login`)"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return f"{host} does not answer"
    return None


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of a run directory: made once, kept in ``wandb_id``, so a resumed run
    (rerun, SLURM requeue) goes on logging into the same W&B run."""
    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B ids: 8 characters of [a-z0-9], as wandb makes them
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """The loggers of ``cfg.logger``, all writing into ``run_dir`` (a multi-step stage's own
    folder included)."""
    loggers = []
    for name, section in (cfg.get("logger") or {}).items():
        # a plain copy: the composed config is in struct mode, and W&B takes extra keys
        logger_cfg = OmegaConf.merge(OmegaConf.to_container(section, resolve=True),
                                     {"save_dir": str(run_dir)})
        if name == "wandb":
            logger_cfg = OmegaConf.merge(logger_cfg, {"id": wandb_run_id(run_dir),
                                                      "resume": "allow"})
            reason = None if logger_cfg.get("offline") else _wandb_offline_reason()
            if reason:
                logger_cfg = OmegaConf.merge(logger_cfg, {"offline": True})
                print(f"W&B: {reason}; logging offline under {run_dir}/wandb (upload later "
                      f"with `wandb sync {run_dir}/wandb/offline-run-*`)")
        logger = instantiate(logger_cfg, _convert_="all")
        init = getattr(logger, "_wandb_init", {})
        if init.get("anonymous", "unset") is None:
            # Lightning always passes anonymous=None, which W&B now warns is deprecated
            init.pop("anonymous")
        loggers.append(logger)
    return loggers


def build_callbacks(cfg: DictConfig, run_dir: Path, extra: list[L.Callback],
                    with_loggers: bool) -> list[L.Callback]:
    """Ours (checkpoints, RNG state, the run record, the epoch line) and ``callbacks``'s."""
    checkpoints = RunFolder(run_dir).checkpoints
    callbacks: list[L.Callback] = [
        *best_checkpoint(cfg, checkpoints),
        # Every epoch, whether or not it improved (Lightning's save_last follows the top-k:
        # an epoch that did not improve would leave an older last.ckpt behind).
        ModelCheckpoint(dirpath=checkpoints, filename=LAST, monitor=None, save_top_k=1,
                        enable_version_counter=False),
        # Ctrl-C, SIGTERM (preemption) or a crash: the state at that step, as interrupted.ckpt.
        OnExceptionCheckpoint(dirpath=checkpoints, filename=INTERRUPTED),
        *periodic_checkpoints(cfg, checkpoints),
        RngState(),
        RedoInterruptedValidation(),  # a validation cut short by SIGTERM runs again
        # parts that follow training progress (IR-Net's EDE), stepped per batch or per epoch
        TrainingProgress(per_batch=cfg.get("progress_step", "batch") == "batch"),
        *extra,
        *(instantiate(c, _convert_="all") for c in (cfg.get("callbacks") or {}).values()),
    ]
    if with_loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    callbacks.append(RichProgressBar() if sys.stdout.isatty() else EpochLine())
    return callbacks


def best_checkpoint(cfg: DictConfig, folder: Path) -> list[ModelCheckpoint]:
    """``best.ckpt`` at the best ``val/top1``: ``checkpoint.best=weights`` (default) keeps the
    model and its metadata only (a copy of last.ckpt with the optimizer's state would double
    the disk per run; resuming uses last.ckpt), ``full`` everything, ``none`` no file
    (``test_weights=best`` then has nothing to load: refused when the config is checked)."""
    kind = cfg.checkpoint.get("best", "weights")
    if kind == "none":
        return []
    return [ModelCheckpoint(dirpath=folder, filename=BEST, monitor=Metric.VAL_TOP1, mode="max",
                            auto_insert_metric_name=False, save_weights_only=kind == "weights")]


def periodic_checkpoints(cfg: DictConfig, folder: Path) -> list[ModelCheckpoint]:
    """``checkpoint.every_n_minutes`` / ``every_n_steps``: mid-epoch checkpoints
    ``step-<step>.ckpt``, the newest ``keep_last`` kept (each written whole, see build_trainer)."""
    c = cfg.checkpoint
    clocks = [{"train_time_interval": timedelta(minutes=c.every_n_minutes)}
              if c.every_n_minutes else None,
              {"every_n_train_steps": c.every_n_steps} if c.every_n_steps else None]
    return [ModelCheckpoint(dirpath=folder, filename=STEP_NAME, monitor="step", mode="max",
                            save_top_k=c.keep_last, auto_insert_metric_name=False,
                            save_on_train_epoch_end=False, **clock)
            for clock in clocks if clock]


def cluster_plugins() -> list:
    """Under SLURM: Lightning's auto-requeue on the time-limit signal (USR2, which
    ``hydra/launcher=slurm`` asks SLURM to send). Lightning saves ``hpc_ckpt_*.ckpt``, requeues
    the job and the requeued run resumes (``resume=auto``). Submitit's own handler for that
    signal is removed so that Lightning's is the one that runs."""
    if not SLURMEnvironment.detect():
        return []
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    return [SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR2)]


def use_channels_last(cfg: DictConfig) -> bool:
    if cfg.channels_last == "auto":
        return cfg.trainer.accelerator in ("gpu", "cuda")
    return bool(cfg.channels_last)


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list,
                  run_dir: Path) -> L.Trainer:
    """The Trainer of ``cfg.trainer``, writing checkpoints whole or not at all
    (:class:`AtomicCheckpointIO`), with the cluster's plug-ins."""
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                       default_root_dir=str(run_dir), enable_progress_bar=sys.stdout.isatty(),
                       # our complexity line replaces Lightning's summary (0 FLOPs per row)
                       enable_model_summary=False,
                       plugins=[AtomicCheckpointIO(), *cluster_plugins()], _convert_="all")
