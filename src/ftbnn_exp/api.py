"""The Python API: what the shell commands do, from a notebook or a script.

Every name here is also ``ftbnn_exp.<name>``::

    import ftbnn_exp

    run = ftbnn_exp.train(["nonlinearity=prelu", "trainer.max_epochs=2"], run_dir="runs/prelu")
    run.top1, run.folder                       # test top-1 (%), the run folder
    ftbnn_exp.runs_table("runs")               # every run under a folder, one row each
    ftbnn_exp.export(run.folder / "checkpoints" / "last.ckpt", "prelu.ftbnn")
    ftbnn_exp.predict("prelu.ftbnn", "my_digits/")

Runs go through the CLI's own machinery (:mod:`ftbnn_exp.app.session`): the overrides are
``python -m ftbnn_exp``'s, checked the same way, and a run folder is the CLI's
(``metrics.json``, checkpoints, logs, ``.hydra/``), so ``python -m ftbnn_exp.report`` reads
it and the same command resumes it. Mistakes raise :class:`ftbnn_exp.errors.UserError` with
the CLI's one-line message. Imports happen when a function is called, so ``import ftbnn_exp``
stays instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch import Tensor, nn

    from ftbnn_exp.complexity import Complexity
    from ftbnn_exp.deploy.predict import Prediction

__all__ = ["Run", "compose", "count_complexity", "create_model", "export", "load_export",
           "predict", "resume", "runs_table", "test", "train"]


@dataclass(frozen=True)
class Run:
    """A finished job: ``record`` is its ``metrics.json`` (status, per-epoch ``history``,
    ``final`` and ``best`` metrics, complexity, resolved ``config``, ``wall_seconds``) and
    ``folder`` its run folder."""

    record: dict[str, Any]
    folder: Path

    @property
    def status(self) -> str:
        """``completed``, ``diverged`` (loss became non-finite) or ``interrupted``."""
        from ftbnn_exp.artifacts import Metric

        return str(self.record.get(Metric.STATUS))

    @property
    def top1(self) -> float | None:
        """Test top-1 in %, of the weights after the last epoch (``test_weights=last``)."""
        from ftbnn_exp.artifacts import Metric

        return (self.record.get(Metric.FINAL) or {}).get(Metric.TEST_TOP1)

    @property
    def checkpoint(self) -> Path:
        """``checkpoints/last.ckpt`` (a multi-step job's: its last stage's)."""
        from ftbnn_exp.artifacts import LAST, RunFolder

        stages = self.record.get("stages")
        folder = Path(stages[-1]["run_dir"]) if stages else self.folder
        return RunFolder(folder).checkpoint(LAST)


def _job(overrides: Sequence[str], run_dir: str | Path | None) -> Run:
    from ftbnn_exp.app.console import quiet
    from ftbnn_exp.app.session import run_overrides

    if isinstance(overrides, str):
        raise TypeError("overrides is a list of strings, e.g. ['trainer.max_epochs=2']")
    quiet()
    outcome = run_overrides(list(overrides), run_dir)
    return Run(outcome.record, outcome.folder)


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m ftbnn_exp <overrides>`` runs with (Hydra's compose API over
    the package's ``conf/``), checked as the CLI checks it; ``${hydra:...}`` keys resolve only
    inside a run."""
    from ftbnn_exp.app.config import check_overrides, compose_config

    check_overrides(list(overrides))
    return compose_config(list(overrides))


def train(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> Run:
    """Train and test one job, as ``python -m ftbnn_exp <overrides>`` does, into ``run_dir``
    (default: the CLI's ``outputs/<run name>/<time>/``). A run that already finished in
    ``run_dir`` with the same config is returned, not trained again; an interrupted one
    resumes (``resume=auto``)."""
    return _job(overrides, run_dir)


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> Run:
    """Continue the run in ``run_dir`` with its own overrides (``.hydra/overrides.yaml``),
    changed by ``overrides``: an interrupted run goes on from its checkpoint; a longer one,
    ``["trainer.max_epochs=20", "resume_changes=rescale"]``, trains on with its schedule
    stretched (without ``rescale`` a changed run-shaping key is refused, naming it)."""
    from ftbnn_exp.app.session import merged_overrides, recorded_overrides

    folder = Path(run_dir)
    return _job(merged_overrides(recorded_overrides(folder), list(overrides)), folder)


def test(run_dir: str | Path, weights: str = "last") -> Run:
    """The run in ``run_dir`` tested with the weights of ``last.ckpt`` or ``best.ckpt``
    (``test_weights``); a run already tested so returns its record."""
    return resume(run_dir, [f"test_weights={weights}"])


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """A model of the registry by its timm name (``ftbnn_resnet``, ``bireal_resnet34``,
    ``ftbnn_derived34``, ``resnet18_fp``, ...), e.g.
    ``create_model("ftbnn_resnet", depth=18, num_classes=10, image_size=32)``: the
    builder's arguments as keywords (``timm.create_model``)."""
    import timm

    import ftbnn_exp.models  # noqa: F401  (registers the families with timm)

    return timm.create_model(name, **kwargs)


def count_complexity(model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
                     convention: str = "macs") -> Complexity:
    """FLOPs, BOPs and params of ``model`` on one image of ``input_shape`` (C, H, W), as the
    runs' complexity line and Table 4 count them (``convention="paper"``: the paper's FLOPs).
    ``.totals()`` gives the numbers, ``.budget`` FLOPs + BOPs / 64."""
    from ftbnn_exp.complexity import count_complexity as count

    return count(model, input_shape, convention)


def runs_table(folder: str | Path) -> Any:
    """Every run under ``folder`` (a run folder, a multirun, any tree of them), one row each:
    run name, experiment, row, seed, status, epochs, test top-1 / top-5, best val top-1, wall
    seconds, data, model, folder. A ``pandas.DataFrame`` where pandas is installed, else a
    list of dicts (pandas is not a dependency)."""
    from ftbnn_exp.report.frame import run_rows

    rows = run_rows(Path(folder))
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def export(checkpoint: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the inference model of a run's checkpoint to ``out`` (1-bit packed binary convs,
    folded BN), as ``deploy export`` does; the sizes (bytes) of checkpoint, weights and
    export."""
    from ftbnn_exp.deploy.export import export as write

    return write(checkpoint, out)


def load_export(path: str | Path) -> nn.Module:
    """The inference model of an export (eval mode); a plain ``nn.Module`` taking a batch
    prepared as its test data (``predict`` prepares image files)."""
    from ftbnn_exp.deploy.export import load_export as load

    return load(path)


def predict(export_path: str | Path, images: str | Path | Tensor, top: int = 3
            ) -> list[Prediction]:
    """Classes of ``images``, an image file, a folder of them (prepared as the model's test
    split was) or a prepared batch (N, C, H, W), by the export at ``export_path``: one
    :class:`~ftbnn_exp.deploy.predict.Prediction` each (``label``, ``probability``, ``top``
    classes with theirs), as ``deploy predict`` prints them."""
    from ftbnn_exp.deploy.export import read_export
    from ftbnn_exp.deploy.predict import predict_files, predict_tensors

    model, metadata = read_export(export_path)
    if isinstance(images, str | Path):
        return predict_files(model, metadata, images, top)
    return predict_tensors(model, images, (f"image {i}" for i in range(len(images))), top)
