"""Config → objects: data module, model, complexity, loggers, trainer."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from netrc import netrc
from pathlib import Path
from typing import Any

import lightning as L
import torch
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

from ftbnn_exp.checkpoints import model_weights
from ftbnn_exp.complexity import Complexity, WidthChoice, count_complexity, solve_width
from ftbnn_exp.data import ClassificationDataModule, DataSpec
from ftbnn_exp.errors import UserError
from ftbnn_exp.models import bireal_resnet, derived_ftbnn, ftbnn_resnet, resnet_fp
from ftbnn_exp.models.toy import Fig2Net
from ftbnn_exp.nn import BinaryConv2d, NonLinearitySchedule
from ftbnn_exp.training.callbacks import EpochLine, RngState
from ftbnn_exp.training.distillation import DistillationSpec
from ftbnn_exp.training.optim import OptimizerSpec, SchedulerSpec

FAMILIES = ("ftbnn", "bireal", "derived", "resnet_fp", "fig2")
IMAGENET = DataSpec(image_size=224, in_channels=3, num_classes=1000)


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    return instantiate(cfg.data, _convert_="all")


def build_schedule(cfg: DictConfig) -> NonLinearitySchedule:
    n = cfg.nonlinearity
    return NonLinearitySchedule(n.stage_end, n.other, n.placement, n.period)


def resolve_width(cfg: DictConfig) -> WidthChoice | None:
    """Derived models only: ``width`` if given, else the solver's width for ``budget``."""
    if cfg.model.family != "derived" or cfg.width is not None:
        return None
    if cfg.budget is None:
        raise UserError("model=derived needs width=N or budget=M (e.g. budget=90 or budget=135)")
    return solve_width(cfg.depth, cfg.groups, float(cfg.budget), "paper")


def build_model(cfg: DictConfig, spec: DataSpec, width: int | None = None) -> nn.Module:
    """The model of ``cfg.model.family``, adapted to the data's size, channels and classes."""
    model = _model_of_family(cfg, spec, width)
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.lean_backward = bool(cfg.get("lean_backward", True))
    return model


def _model_of_family(cfg: DictConfig, spec: DataSpec, width: int | None) -> nn.Module:
    family, m = cfg.model.family, cfg.model
    shape: dict[str, Any] = {"in_channels": spec.in_channels, "num_classes": spec.num_classes,
                             "image_size": spec.image_size}
    if family == "ftbnn":
        return ftbnn_resnet(build_schedule(cfg), cfg.depth, stem_relu=m.stem_relu,
                            bound=m.bound, **shape)
    if family == "bireal":
        schedule = build_schedule(cfg) if m.explicit_nonlinearity else None
        return bireal_resnet(schedule, cfg.depth, stem_relu=m.stem_relu, bound=m.bound, **shape)
    if family == "derived":
        return derived_ftbnn(build_schedule(cfg), width or cfg.width, cfg.depth, cfg.groups,
                             bound=m.bound, **shape)
    if family == "resnet_fp":
        return resnet_fp(cfg.depth, **shape)
    if family == "fig2":
        return Fig2Net(m.kind, m.width, m.bottleneck, spec.in_channels, spec.num_classes,
                       m.stem_stride, m.pooled_size, m.bound)
    raise UserError(f"model.family={family!r} is unknown; allowed: {', '.join(FAMILIES)}")


def build_teacher(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """The distillation teacher of ``kd.teacher``: ``torchvision`` (its ImageNet ResNet-18) or
    a checkpoint path: a run of this framework (e.g. ``model=resnet18_fp``) or a plain
    torchvision ResNet-18 state dict. Offline, train the teacher here first."""
    source = str(cfg.kd.teacher)
    if source == "torchvision":
        if (spec.in_channels, spec.num_classes) != (3, 1000):
            raise UserError(f"kd.teacher=torchvision is an ImageNet model (3 channels, 1000 "
                            f"classes); for data={cfg.data.name} set kd.teacher=<last.ckpt of "
                            f"a model=resnet18_fp run on it>")
        try:
            return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except (OSError, RuntimeError) as error:
            raise UserError(f"kd.teacher=torchvision: the ImageNet weights could not be "
                            f"downloaded ({' '.join(str(error).split())[:160]}); set "
                            f"kd.teacher=<checkpoint of a resnet18_fp run>") from None
    path = Path(source)
    if not path.is_file():
        raise UserError(f"kd.teacher={source} is not a file; allowed: torchvision or a "
                        f"checkpoint path")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    try:
        if isinstance(checkpoint, dict) and "ftbnn_exp" in checkpoint:
            return model_from_checkpoint(checkpoint, spec)[0]
        teacher = resnet_fp(18, spec.in_channels, spec.num_classes, spec.image_size)
        teacher.load_state_dict(checkpoint.get("state_dict", checkpoint))
        return teacher
    except RuntimeError as error:
        raise UserError(f"kd.teacher={source} does not fit data={cfg.data.name} "
                        f"({' '.join(str(error).split())[:200]})") from None


def distillation_spec(cfg: DictConfig) -> DistillationSpec:
    k = cfg.kd
    return DistillationSpec(float(k.temperature), float(k.kd_weight), float(k.ce_weight),
                            float(k.attention_weight))


def model_from_metadata(metadata: dict[str, Any],
                        spec: DataSpec | None = None) -> tuple[nn.Module, DictConfig]:
    """The (untrained) model a checkpoint's metadata describes, for ``spec`` or the data set
    of its own config, and that config."""
    cfg = OmegaConf.create(metadata["config"])
    spec = spec or build_datamodule(cfg).spec
    return build_model(cfg, spec, metadata.get("width")), cfg


def model_from_checkpoint(checkpoint: dict[str, Any],
                          spec: DataSpec | None = None) -> tuple[nn.Module, DictConfig]:
    """The trained model of a checkpoint of this framework (eval mode) and its config."""
    model, cfg = model_from_metadata(checkpoint["ftbnn_exp"], spec)
    model.load_state_dict(model_weights(checkpoint))
    return model.eval(), cfg


def convention_for(cfg: DictConfig) -> str:
    """``paper`` for the derived models (Table 4's convention), ``macs`` for the others."""
    if cfg.convention is not None:
        return cfg.convention
    return "paper" if cfg.model.family == "derived" else "macs"


def measure(cfg: DictConfig, spec: DataSpec, width: int | None) -> Complexity:
    model = build_model(cfg, spec, width)
    return count_complexity(model, (spec.in_channels, spec.image_size, spec.image_size),
                            convention_for(cfg))


def global_batch(cfg: DictConfig, world_size: int) -> int:
    return cfg.data.batch_size * world_size * cfg.trainer.accumulate_grad_batches


def optimizer_spec(cfg: DictConfig, world_size: int = 1) -> OptimizerSpec:
    """The optimizer of ``cfg.optimizer``; with ``scale_lr`` the lr grows linearly with the
    global batch over ``reference_batch`` (off by default: the paper does not scale)."""
    o = cfg.optimizer
    lr = float(o.lr)
    if o.get("scale_lr"):
        lr *= global_batch(cfg, world_size) / o.reference_batch
    return OptimizerSpec(o.name, lr, float(o.weight_decay), float(o.binary_weight_decay),
                         tuple(o.betas))


def scheduler_spec(cfg: DictConfig) -> SchedulerSpec:
    s = cfg.scheduler
    return SchedulerSpec(s.name, tuple(float(m) for m in s.milestones), float(s.gamma))


def _wandb_online() -> bool:
    """W&B can log online: an API key is set up and its server answers."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return False
    host = "api.wandb.ai"
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc().authenticators(host) is not None
        except (FileNotFoundError, OSError, ValueError):
            has_key = False
    if not has_key:
        return False
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


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
    for name, logger_cfg in (cfg.get("logger") or {}).items():
        logger_cfg = OmegaConf.merge(logger_cfg, {"save_dir": str(run_dir)})
        if name == "wandb":
            logger_cfg = OmegaConf.merge(logger_cfg, {"id": wandb_run_id(run_dir),
                                                      "resume": "allow"})
            if not logger_cfg.get("offline") and not _wandb_online():
                logger_cfg = OmegaConf.merge(logger_cfg, {"offline": True})
                print(f"W&B: no API key or no network; logging offline under {run_dir}/wandb "
                      f"(upload later with `wandb sync {run_dir}/wandb/offline-run-*`)")
        loggers.append(instantiate(logger_cfg, _convert_="all"))
    return loggers


def build_callbacks(run_dir: Path, extra: list[L.Callback], with_loggers: bool) -> list[L.Callback]:
    checkpoints = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val/top1",
                        mode="max", save_last=True, auto_insert_metric_name=False),
        # Ctrl-C, SIGTERM (preemption) or a crash: the state at that step, as interrupted.ckpt.
        OnExceptionCheckpoint(dirpath=checkpoints, filename="interrupted"),
        RngState(),
        *extra,
    ]
    if with_loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    callbacks.append(RichProgressBar() if sys.stdout.isatty() else EpochLine())
    return callbacks


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
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                       default_root_dir=str(run_dir), enable_progress_bar=sys.stdout.isatty(),
                       plugins=cluster_plugins() or None, _convert_="all")
