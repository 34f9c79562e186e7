"""One training run as small steps: prepare → build the trainer → fit and test → finish.

Used by the CLI (one run per Hydra job) and by the multi-step pipeline (one run per stage).
A :class:`UserError` is recorded in the run's ``metrics.json`` and raised on; the CLI decides
what it does to the process.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ftbnn_exp.app.build import (
    IMAGENET,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
    convention_for,
    distillation_teacher,
    measure,
    model_spec,
    resolve_width,
    scaled_optimizer,
    use_channels_last,
)
from ftbnn_exp.app.schema import RunSpecs, validate
from ftbnn_exp.app.storage import (
    check_free_space,
    check_resume_config,
    free_reserve,
    own_run_folder,
    resume_checkpoint,
)
from ftbnn_exp.artifacts import (
    BEST,
    LAST,
    Metric,
    RunFolder,
    load_checkpoint,
    model_from_checkpoint,
    model_weights,
    write_atomic,
)
from ftbnn_exp.complexity import Complexity
from ftbnn_exp.complexity.counter import BOPS_PER_FLOP
from ftbnn_exp.data import ClassificationDataModule
from ftbnn_exp.errors import UserError, one_line_message
from ftbnn_exp.models import ModelSpec
from ftbnn_exp.nn import set_binarization
from ftbnn_exp.training.callbacks import RunRecord
from ftbnn_exp.training.checkpoint_io import NO_SPACE, DiskFull
from ftbnn_exp.training.distillation import STAGE_MODES, DistillationModule
from ftbnn_exp.training.module import ClassificationModule


@dataclass(frozen=True)
class RunPlace:
    """Where a run writes and what it is called in reports. ``describe``, where given, writes
    the folder's description (Hydra's ``.hydra/`` files): called once the run owns the folder
    and goes ahead, so a refused run never rewrites its owner's."""

    run_dir: Path
    experiment: str | None = None
    describe: Callable[[], None] | None = None


@dataclass
class Prepared:
    """What :func:`prepare` built, before any trainer exists."""

    specs: RunSpecs
    datamodule: ClassificationDataModule
    spec: ModelSpec
    model: nn.Module
    teacher: nn.Module | None
    attention_teacher: nn.Module | None
    checkpoint: Path | None
    rescale_schedule: bool


@rank_zero_only
def say(message: str) -> None:
    print(message, flush=True)


def fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights and buffers (shows which weights a stage started
    from, and which a finished run was tested with: :func:`untrusted`)."""
    return weights_fingerprint(model.state_dict())


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


def previous_stage(init_from: str | Path | None, stage: int) -> nn.Module:
    """The previous stage's trained network, in that stage's binarization (Real-to-Bin's
    attention teacher)."""
    if init_from is None:
        raise UserError(f"kd.attention_from=previous_stage: stage {stage} needs the previous "
                        f"stage's checkpoint (init_from=...)")
    model = model_from_checkpoint(load_checkpoint(init_from))
    set_binarization(model, *STAGE_MODES[stage - 1])
    return model


def describe(cfg: DictConfig, place: RunPlace) -> dict[str, Any]:
    """The run's metadata before anything is built (what a failed run still records)."""
    model = cfg.model
    return {
        "run_name": cfg.run_name,
        "experiment": place.experiment,
        "row": cfg.get("row"),
        "model": model.name,
        "data": cfg.data.name,
        "depth": model.get("depth"),
        "groups": model.get("groups"),
        "seed": cfg.seed,
        "run_dir": str(place.run_dir),
        Metric.CONFIG: OmegaConf.to_container(cfg, resolve=True),
    }


def complexity_line(ours: Complexity, imagenet: Complexity, image_size: int) -> str:
    def millions(c: Complexity) -> str:
        return (f"FLOPs {c.flops / 1e6:.2f}M  BOPs {c.bops / 1e6:.2f}M  params "
                f"{c.params / 1e6:.3f}M  budget {c.budget / 1e6:.2f}M")

    return (f"complexity [{ours.convention}]: {millions(ours)} at {image_size} px; "
            f"{millions(imagenet)} at ImageNet's 224 px")


def prepare(cfg: DictConfig, place: RunPlace, info: dict[str, Any], stage: int | None,
            init_from: str | Path | None) -> Prepared:
    """Validate, then build data, model (stage modes, starting weights), teacher and
    complexity; check the disk and find the checkpoint to resume from."""
    specs = validate(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.use_run_dir(place.run_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    choice = resolve_width(specs, cfg.budget, cfg.get("budget_rate", BOPS_PER_FLOP))
    if choice:
        say(f"width solver: {choice.describe()}")
    spec = model_spec(cfg, specs, datamodule.spec, choice)
    model = build_model(spec, cfg.lean_backward)
    info.update(model_spec=spec.to_dict(), width=spec.kwargs.get("width"),
                nonlinearity=specs.family.label(spec.kwargs, cfg.nonlinearity.name))
    if stage is not None:
        set_binarization(model, *STAGE_MODES[stage])
        info["stage"] = stage
    if init_from is not None:
        load_weights(model, init_from)
        info["init"] = {"from": str(init_from), "fingerprint": fingerprint(model)}
    distilled = specs.distillation is not None and (stage != 0 or cfg.kd.distill_stage0)
    teacher = distillation_teacher(cfg, datamodule) if distilled else None
    attention = (previous_stage(init_from, stage)
                 if distilled and cfg.kd.attention_from == "previous_stage" and stage else None)
    convention = convention_for(cfg, specs)
    ours, imagenet = measure(spec, datamodule.spec, convention), measure(spec, IMAGENET,
                                                                           convention)
    info[Metric.COMPLEXITY], info[Metric.COMPLEXITY_IMAGENET] = ours.totals(), imagenet.totals()
    say(complexity_line(ours, imagenet, datamodule.spec.image_size))
    check_free_space(place.run_dir, model)
    point, skipped = resume_checkpoint(cfg.resume, place.run_dir)
    for line in skipped:
        say(line)
    rescale = point is not None and check_resume_config(point, info[Metric.CONFIG],
                                                        cfg.resume_changes)
    return Prepared(specs, datamodule, spec, model, teacher, attention,
                    point.path if point else None, rescale)


def lightning_module(cfg: DictConfig, prepared: Prepared, info: dict[str, Any],
                     world_size: int) -> ClassificationModule:
    specs = prepared.specs
    common = {"optimizer": scaled_optimizer(cfg, specs.optimizer, world_size),
              "scheduler": specs.scheduler, "metadata": info,
              "channels_last": use_channels_last(cfg),
              "rescale_schedule": prepared.rescale_schedule}
    num_classes = prepared.datamodule.spec.num_classes
    if prepared.teacher is not None:
        return DistillationModule(prepared.model, num_classes, prepared.teacher,
                                  specs.distillation, prepared.attention_teacher, **common)
    return ClassificationModule(prepared.model, num_classes, **common)


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, module: ClassificationModule,
                 prepared: Prepared) -> None:
    if prepared.checkpoint is not None:
        say(f"resuming from {prepared.checkpoint}"
            + (f" (schedule rescaled to {cfg.trainer.max_epochs} epochs)"
               if prepared.rescale_schedule else ""))
    with warnings.catch_warnings():
        # With OnExceptionCheckpoint, Lightning looks for a last checkpoint itself and warns
        # on every fresh run (resume_checkpoint has already decided), and testing the weights
        # in memory (test_weights=last) draws a notice that they are the ones used.
        warnings.filterwarnings("ignore", message=r".*there is no last checkpoint available")
        warnings.filterwarnings("ignore", message=r".*ckpt_path=None.*")
        # test_weights=best: best.ckpt's callback is the first (build_callbacks), as meant
        warnings.filterwarnings("ignore", message=r".*multiple `ModelCheckpoint` callbacks")
        trainer.fit(module, datamodule=prepared.datamodule, ckpt_path=prepared.checkpoint,
                    weights_only=True)  # a checkpoint is data: no pickled code
        if not trainer.interrupted:
            # A SLURM requeue's checkpoint is spent once training went past it; left in place,
            # Lightning would restore it for testing (and any later rerun).
            for spent in RunFolder(Path(trainer.default_root_dir)).hpc_checkpoints():
                spent.unlink()
        if module.diverged_at_epoch is None or cfg.test_weights == BEST:
            weights = BEST if cfg.test_weights == BEST else None
            trainer.test(module, datamodule=prepared.datamodule, ckpt_path=weights,
                         verbose=False, weights_only=True)


def finish(cfg: DictConfig, record: RunRecord, module: ClassificationModule,
           prepared: Prepared, run_dir: Path) -> dict[str, Any]:
    """Write the final ``metrics.json`` and print the run's last line."""
    skipped = prepared.datamodule.skipped_samples()
    if skipped:
        record.info["skipped_images"] = len(skipped)
        say(f"skipped {len(skipped)} unreadable images, listed in "
            f"{prepared.datamodule.skipped_log}")
    record.info["final_fingerprint"] = fingerprint(prepared.model)
    kept = cfg.checkpoint.get("on_completion", "keep")
    finished = module.diverged_at_epoch is not None or not module.trainer.interrupted
    if kept != "keep" and finished:
        record.info["checkpoints_at_completion"] = kept
    record.write(module)
    result = record.payload(module)
    if kept != "keep" and finished:
        shrink_checkpoints(RunFolder(run_dir).checkpoints, kept)
    say(result_line(cfg, result, run_dir))
    return result


SPENT = ("optimizer_states", "lr_schedulers", "loops", "callbacks")
"""What only training on needs; a finished run's ``checkpoint.on_completion=weights`` drops it."""


def shrink_checkpoints(folder: Path, kept: str) -> None:
    """A finished run's checkpoints as ``checkpoint.on_completion`` asks: ``weights``, each
    file without what only training on needs (written whole: :func:`write_atomic`) and the
    spent resume points (interrupted, periodic) removed; ``none``, the folder removed."""
    if kept == "none":
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in sorted(folder.glob("*.ckpt")):
        if path.stem not in (LAST, BEST):
            path.unlink(missing_ok=True)
            continue
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if any(key in checkpoint for key in SPENT):
            slim = {k: v for k, v in checkpoint.items() if k not in SPENT}
            write_atomic(path, lambda stream, slim=slim: torch.save(slim, stream))


def refuse_training_on(cfg: DictConfig, run_dir: Path) -> None:
    """A run that finished with its training state dropped (``checkpoint.on_completion``)
    cannot train on or be re-tested from it: one line, not a fresh start over its record."""
    folder = RunFolder(run_dir)
    if cfg.resume == "never" or not folder.has_metrics():
        return
    try:
        earlier = folder.read_metrics()
    except UserError:
        return  # an unreadable record is the rerun checks' to name
    kept = earlier.get("checkpoints_at_completion") if isinstance(earlier, dict) else None
    if kept in ("weights", "none"):
        raise UserError(f"{run_dir} finished with checkpoint.on_completion={kept}: its "
                        f"optimizer state is gone, so it cannot train on or be re-tested; "
                        f"start a new run folder (hydra.run.dir=...)")


def result_line(cfg: DictConfig, result: dict[str, Any], run_dir: Path) -> str:
    """A run's last line: its test scores, status and epochs, and where its record is."""
    final = result.get(Metric.FINAL) or {}
    top1, top5 = final.get(Metric.TEST_TOP1), final.get(Metric.TEST_TOP5)
    scores = ("not tested" if top1 is None else f"test top-1 {top1:.2f}%"
              + ("" if top5 is None else f"  top-5 {top5:.2f}%"))
    epochs = result.get(Metric.EPOCHS_RUN)
    return (f"{cfg.run_name}: {scores}  [{result.get(Metric.STATUS)}, {epochs} "
            f"epoch{'' if epochs == 1 else 's'}] -> {RunFolder(run_dir).metrics_file}")


FINISHED = ("completed", "diverged")
"""Statuses of a run with nothing left to do: training ended and its result is recorded."""
NOT_SCORING = ("logger", "resume", "resume_changes", "checkpoint", "data.num_workers",
               "trainer.log_every_n_steps")
"""Keys that neither shape a run nor score it: where it logs, how it resumes, how often it
checkpoints, how many workers read its data (each sample's draws come from (seed, epoch,
index)). A rerun that changes any other key is not taken as finished (:func:`finished_earlier`):
it resumes (training on, or re-testing) or is refused by the resume check naming the keys."""


def _without(config: Any, keys: tuple[str, ...], prefix: str = "") -> Any:
    """``config`` less the dotted ``keys``."""
    if not isinstance(config, dict):
        return config
    return {k: _without(v, keys, f"{prefix}{k}.") for k, v in config.items()
            if f"{prefix}{k}" not in keys}


def weights_fingerprint(weights: Mapping[str, torch.Tensor]) -> str:
    """A short hash of a state dict's tensors (:func:`fingerprint` of the model holding them)."""
    digest = hashlib.sha256()
    for key, value in sorted(weights.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def untrusted(record: dict[str, Any], run_dir: Path) -> str | None:
    """Why a finished record cannot stand for its run: the checkpoint it was tested with
    (``last.ckpt``, or ``best.ckpt`` under ``test_weights=best``) is gone, unreadable or holds
    other weights than it recorded (``final_fingerprint``). None when it holds them."""
    config = record.get(Metric.CONFIG)
    path = RunFolder(run_dir).tested_checkpoint(
        config.get("test_weights") if isinstance(config, dict) else None)
    if not path.is_file():
        return f"its checkpoints are gone from {path.parent} (no {path.name})"
    try:
        weights = model_weights(load_checkpoint(path))
    except UserError as error:
        return f"{path.name} cannot be read ({one_line_message(error)})"
    if weights_fingerprint(weights) != record.get("final_fingerprint"):
        return f"{path.name} does not hold the weights it recorded (final_fingerprint)"
    return None


def finished_earlier(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The record of a run that finished in ``run_dir`` with this config, or None when this
    run has to go ahead. So a rerun of a multirun into the same folder neither trains nor tests
    its finished jobs again (resuming the last checkpoint would re-test it). Only under
    ``resume=auto``: ``never`` or a path asks for training. Every key but
    :data:`NOT_SCORING` must be as recorded: a changed one goes on to the resume check, which
    refuses run-shaping ones naming them, or resumes (another ``trainer.max_steps`` trains on,
    another ``trainer.limit_test_batches`` re-tests). A record whose weights are not in its
    checkpoints any more (deleted, replaced) is not trusted either."""
    folder = RunFolder(run_dir)
    path = folder.metrics_file
    if cfg.resume != "auto" or not folder.has_metrics():
        return None
    try:
        earlier = folder.read_metrics()
    except UserError:
        return None  # the run itself decides what a torn record means
    if not isinstance(earlier, dict) or earlier.get(Metric.STATUS) not in FINISHED:
        return None
    current = OmegaConf.to_container(cfg, resolve=True)
    if _without(earlier.get(Metric.CONFIG), NOT_SCORING) != _without(current, NOT_SCORING):
        return None
    problem = untrusted(earlier, run_dir)
    if problem:
        say(f"not skipped: {path} says {earlier[Metric.STATUS]}, but {problem}; running it "
            f"again")
        return None
    return earlier


def record_failure(folder: RunFolder, info: dict[str, Any], message: str) -> None:
    """A run that failed before training: a fresh folder records it as failed; the record of
    an earlier run in the folder (a refused resume) keeps its history and status and notes
    the refused attempt. On a full disk the record stays as it was (the write is atomic): the
    error being recorded, often that very disk's, is what the user is told."""
    payload = {**info, Metric.STATUS: "failed", "error": message}
    if folder.has_metrics():
        try:
            earlier = folder.read_metrics()
        except UserError:
            earlier = None
        if isinstance(earlier, dict) and earlier.get(Metric.HISTORY):
            payload = {**earlier, "last_attempt": {"error": message}}
    try:
        folder.write_metrics(payload)
    except OSError as error:
        if error.errno not in NO_SPACE:
            raise


def train_run(cfg: DictConfig, place: RunPlace, stage: int | None = None,
              init_from: str | Path | None = None) -> dict[str, Any]:
    """Train and test one model; ``stage`` sets the multi-step binarization (Appendix C) and
    ``init_from`` the starting weights. Returns the ``metrics.json`` payload; a run that
    finished in this folder before returns its record untouched (:func:`finished_earlier`).
    The run folder is owned meanwhile: a second run into it is refused before it writes
    anything."""
    place.run_dir.mkdir(parents=True, exist_ok=True)
    with own_run_folder(place.run_dir):
        earlier = finished_earlier(cfg, place.run_dir)
        if earlier is not None:
            say("skipped, finished earlier: " + result_line(cfg, earlier, place.run_dir))
            return earlier
        refuse_training_on(cfg, place.run_dir)
        return _train_owned(cfg, place, stage, init_from)


def _train_owned(cfg: DictConfig, place: RunPlace, stage: int | None,
                 init_from: str | Path | None) -> dict[str, Any]:
    run_dir = place.run_dir
    info = describe(cfg, place)
    try:
        prepared = prepare(cfg, place, info, stage, init_from)
    except UserError as error:
        record_failure(RunFolder(run_dir), info, one_line_message(error))
        raise
    if place.describe is not None:
        place.describe()
    if cfg.compile:
        prepared.model.compile()
    record = RunRecord(RunFolder(run_dir).metrics_file, info,
                       resuming=prepared.checkpoint is not None)
    loggers = build_loggers(cfg, run_dir)
    trainer = build_trainer(cfg, build_callbacks(cfg, run_dir, [record], bool(loggers)), loggers,
                            run_dir)
    info["world_size"] = record.info["world_size"] = trainer.world_size
    module = lightning_module(cfg, prepared, info, trainer.world_size)
    for logger in trainer.loggers:
        logger.log_hyperparams({**info[Metric.CONFIG], "width": info["width"],
                                Metric.COMPLEXITY: info[Metric.COMPLEXITY],
                                Metric.COMPLEXITY_IMAGENET: info[Metric.COMPLEXITY_IMAGENET]})
    try:
        fit_and_test(cfg, trainer, module, prepared)
    except DiskFull:
        free_reserve(run_dir)  # room for the record's last word, which the full disk refused
        record.write(module)
        raise
    close_loggers(trainer.loggers)
    return finish(cfg, record, module, prepared, run_dir)


def close_loggers(loggers: list) -> None:
    """Ends the loggers' runs now (W&B's closing lines), so that the run's own summary is the
    last thing printed; a logger without a run of its own to end is left as it is."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)  # only one already started
        if callable(getattr(experiment, "finish", None)):
            experiment.finish()
