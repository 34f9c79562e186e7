"""``experiment=kd_multistep``: stages 0 → 1 → 2 of Appendix C, one run folder each.

Each stage is an ordinary run (``stage<N>/`` with its checkpoints and ``metrics.json``) that
starts from the previous stage's last weights. A stage that finished with the same config is
not run again (one whose config changed is checked as any rerun), and an unfinished one
resumes from its own checkpoint, so the
same command continues an interrupted pipeline where it stopped. ``stage=N init_from=<ckpt>``
runs one stage alone. The pipeline's own ``metrics.json`` summarises the stages.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ftbnn_exp.app.build import build_datamodule
from ftbnn_exp.app.compose import CONF_DIR
from ftbnn_exp.app.run import RunPlace, say, train_run
from ftbnn_exp.app.storage import own_run_folder
from ftbnn_exp.artifacts import LAST, Metric, RunFolder
from ftbnn_exp.training.distillation import STAGE_MODES


def teacher_source(cfg: DictConfig, place: RunPlace) -> str | None:
    """``kd.teacher`` made concrete. ``auto``: torchvision's ImageNet ResNet-18 on ImageNet-shaped
    data; on any other data a full-precision ResNet-18 trained here first, for
    ``kd.teacher_epochs``, in ``teacher/`` (a rerun with the same config skips it, as any
    finished run: :func:`~ftbnn_exp.app.run.finished_earlier`): so the pipeline runs offline on
    any data set. None when that training does not complete."""
    if cfg.kd.teacher != "auto":
        return str(cfg.kd.teacher)
    spec = build_datamodule(cfg).spec
    if (spec.in_channels, spec.num_classes) == (3, 1000):
        return "torchvision"
    teacher_dir = place.run_dir / "teacher"
    checkpoint = str(RunFolder(teacher_dir).checkpoint(LAST))
    say(f"teacher: full-precision ResNet-18 on data={cfg.data.name}, "
        f"{cfg.kd.teacher_epochs} epochs (kd.teacher=auto)")
    teacher_cfg = OmegaConf.merge(cfg, {"trainer": {"max_epochs": cfg.kd.teacher_epochs},
                                        "run_name": f"{cfg.run_name}-teacher"})
    teacher_cfg.model = OmegaConf.load(CONF_DIR / "model" / "resnet18_fp.yaml")
    teacher_cfg.kd = None
    result = train_run(teacher_cfg, RunPlace(teacher_dir, place.experiment))
    return checkpoint if result[Metric.STATUS] == "completed" else None


def run_multistep(cfg: DictConfig, place: RunPlace) -> dict[str, Any] | None:
    """The pipeline in its run folder, owned for its whole length (each stage and the teacher
    also own their own subfolders, as ordinary runs)."""
    place.run_dir.mkdir(parents=True, exist_ok=True)
    with own_run_folder(place.run_dir):
        if place.describe is not None:
            place.describe()
        return _stages(cfg, place)


def _stages(cfg: DictConfig, place: RunPlace) -> dict[str, Any] | None:
    teacher = teacher_source(cfg, place)
    if teacher is None:
        return None
    cfg = OmegaConf.merge(cfg, {"kd": {"teacher": teacher}})
    stages = [cfg.stage] if cfg.stage is not None else list(cfg.kd.get("stages") or STAGE_MODES)
    epochs = list(cfg.kd.epochs)
    init = cfg.init_from
    summary: list[dict[str, Any]] = []
    status = "completed"
    for stage in stages:
        stage_dir = place.run_dir / f"stage{stage}"
        # A stage that finished with this config is skipped by train_run; one whose config
        # changed since (other epochs, overrides) is resumed or refused, never taken as done.
        stage_cfg = OmegaConf.merge(cfg, {"trainer": {"max_epochs": epochs[stage]},
                                          "run_name": f"{cfg.run_name}-stage{stage}"},
                                    cfg.kd.stage_overrides[stage] or {})
        say(f"stage {stage}: activations {STAGE_MODES[stage][0]}, weights "
            f"{STAGE_MODES[stage][1]}, {epochs[stage]} epochs"
            + (f", from {init}" if init else ""))
        result = train_run(stage_cfg, RunPlace(stage_dir, place.experiment), stage=stage,
                           init_from=init)
        summary.append({"stage": stage, "run_dir": str(stage_dir),
                        Metric.STATUS: result[Metric.STATUS],
                        Metric.TEST_TOP1: result.get(Metric.FINAL, {}).get(Metric.TEST_TOP1),
                        "init": result.get("init"),
                        "final_fingerprint": result.get("final_fingerprint")})
        if result[Metric.STATUS] != "completed":
            status = summary[-1][Metric.STATUS]
            break
        init = str(RunFolder(stage_dir).checkpoint(LAST))
    payload = {"run_name": cfg.run_name, "experiment": place.experiment, Metric.STATUS: status,
               "stages": summary,
               Metric.FINAL: {Metric.TEST_TOP1: summary[-1][Metric.TEST_TOP1]} if summary else {},
               Metric.CONFIG: OmegaConf.to_container(cfg, resolve=True)}
    folder = RunFolder(place.run_dir)
    folder.write_metrics(payload)
    say(f"{cfg.run_name}: " + ", ".join(
        f"stage {s['stage']} {s[Metric.STATUS]}"
        + (f" test top-1 {top1:.2f}%" if (top1 := s[Metric.TEST_TOP1]) is not None else "")
        for s in summary) + f" -> {folder.metrics_file}")
    return payload
