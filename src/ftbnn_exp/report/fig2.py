"""Fig. 2 (Section 1): accuracy over seeds, feature discrepancy and the feature-space picture of
the four 2-layer MNIST models, from the runs of ``experiment=fig2``."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ftbnn_exp.artifacts import (
    LAST,
    Metric,
    RunFolder,
    data_module,
    load_checkpoint,
    model_from_checkpoint,
)
from ftbnn_exp.errors import UserError
from ftbnn_exp.models.toy import KINDS
from ftbnn_exp.report.discrepancy import feature_discrepancy
from ftbnn_exp.report.runs import Run, load_runs

PAPER_FINDINGS = ("Paper (Fig. 2, qualitative): binary above linear despite its quantization "
                  "error; PReLU and ReLU above binary although their discrepancy is larger; "
                  "ReLU best, with the clearest class separation.")
PLOTTED_POINTS = 3000


@dataclass
class KindResult:
    kind: str
    accuracies: list[float]
    mean_abs: float
    relative: float
    features: Tensor
    labels: Tensor
    projected: bool

    @property
    def accuracy(self) -> str:
        if not self.accuracies:
            return "n/a"
        spread = statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0
        return f"{statistics.mean(self.accuracies):.2f} ± {spread:.2f}"


def _restore(run: Run):
    checkpoint = load_checkpoint(RunFolder(run.path).checkpoint(LAST))
    datamodule = data_module(checkpoint["ftbnn_exp"])
    datamodule.setup("test")
    model = model_from_checkpoint(checkpoint)
    return model, datamodule.test_dataloader()


def _plane(features: Tensor) -> tuple[Tensor, bool]:
    """2-D features as they are; wider ones projected on their two principal axes."""
    if features.shape[1] == 2:
        return features, False
    centred = features - features.mean(dim=0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T, True


@torch.no_grad()
def analyse(kind: str, runs: list[Run]) -> KindResult:
    done = [r for r in runs if r.status == "completed" and r.final(Metric.TEST_TOP1) is not None]
    accuracies = [r.final(Metric.TEST_TOP1) for r in done]
    if not done:
        return KindResult(kind, [], float("nan"), float("nan"), torch.zeros(0, 2),
                          torch.zeros(0), False)
    gaps = []
    for run in done:
        model, loader = _restore(run)
        layers = feature_discrepancy(model, loader)
        gaps.append((statistics.mean(d.mean_abs for d in layers),
                     statistics.mean(d.relative for d in layers)))
    model, loader = _restore(min(done, key=lambda r: r.metrics.get("seed", 0)))
    features, labels = [], []
    for images, targets in loader:
        features.append(model.features(images))
        labels.append(targets)
    plane, projected = _plane(torch.cat(features)[:PLOTTED_POINTS])
    return KindResult(kind, accuracies, statistics.mean(g[0] for g in gaps),
                      statistics.mean(g[1] for g in gaps), plane,
                      torch.cat(labels)[:PLOTTED_POINTS], projected)


def plot(results: list[KindResult], path: Path, data: str) -> Path:
    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 4.4))
    for axis, result in zip(axes, results, strict=True):
        points = result.features.numpy()
        axis.scatter(points[:, 0], points[:, 1], c=result.labels.numpy(), cmap="tab10", s=3,
                     alpha=0.7, linewidths=0)
        axis.set_title(f"{result.kind}\nACC {result.accuracy}%  disc. {result.relative:.3f}",
                       fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if result.projected:
            axis.set_xlabel("PCA of pooled features", fontsize=8)
    figure.suptitle(f"Features before the FC layer, test set ({data}); colour = class",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def fig2_report(root: Path) -> str:
    if not root.is_dir():
        raise UserError(f"'{root}' is not a folder; give the multirun folder of `make fig2`")
    runs = [r for r in load_runs(root) if r.metrics.get("experiment") == "fig2"]
    if not runs:
        raise UserError(f"no experiment=fig2 runs (metrics.json) under '{root}'")
    data = sorted({r.metrics.get("data", "?") for r in runs})
    results = [analyse(kind, [r for r in runs if r.row == kind]) for kind in KINDS]
    lines = [f"Fig. 2 reproduction on {', '.join(data)}: test top-1 over seeds (mean ± std) and "
             "feature discrepancy of the binary convs (mean over both convs and seeds, test set)",
             "", "| model | runs | test top-1 (%) | mean abs. diff. | relative error |",
             "|---|---|---|---|---|"]
    with (root / "fig2.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["model", "runs", "top1_mean", "top1_std", "mean_abs", "relative"])
        for r in results:
            lines.append(f"| {r.kind} | {len(r.accuracies)} | {r.accuracy} | {r.mean_abs:.4f} | "
                         f"{r.relative:.4f} |")
            mean = statistics.mean(r.accuracies) if r.accuracies else ""
            std = statistics.stdev(r.accuracies) if len(r.accuracies) > 1 else ""
            writer.writerow([r.kind, len(r.accuracies), mean, std, r.mean_abs, r.relative])
    plot(results, root / "fig2.png", ", ".join(data))
    lines += ["", PAPER_FINDINGS, "", "Picture: `fig2.png`."]
    report = "\n".join(lines) + "\n"
    (root / "fig2.md").write_text(report)
    return report
