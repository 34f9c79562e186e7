"""Fig. 2's MNIST models, the feature discrepancy and the whole `make fig2` pipeline (small)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftbnn_exp.data import mnist_source
from ftbnn_exp.errors import DataNotFoundError
from ftbnn_exp.models.toy import KINDS, Fig2Net
from ftbnn_exp.nn import BinaryActivation, BinaryConv2d
from ftbnn_exp.report.discrepancy import feature_discrepancy


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("kind", KINDS)
def test_models_forward_and_binarize_as_section_1_says(kind, generator):
    model = Fig2Net(kind)
    x = torch.randn(3, 1, 28, 28, generator=generator)
    assert model(x).shape == (3, 10) and model.features(x).shape == (3, 2)
    binary = 0 if kind == "linear" else 2
    assert count(model, BinaryConv2d) == binary and count(model, BinaryActivation) == binary
    assert count(model, nn.PReLU) == (2 if kind == "prelu" else 0)
    assert count(model, nn.ReLU) == (2 if kind == "relu" else 0)
    assert count(model, nn.Conv2d) == 3  # the initial real conv + one per block


def test_discrepancy_is_zero_for_linear_and_positive_for_binary(generator):
    data = TensorDataset(torch.randn(16, 1, 28, 28, generator=generator),
                         torch.zeros(16, dtype=torch.long))
    loader = DataLoader(data, batch_size=8)
    linear = feature_discrepancy(Fig2Net("linear"), loader)
    assert [d.layer for d in linear] == ["blocks.0", "blocks.1"]
    assert all(d.mean_abs == 0.0 and d.relative == 0.0 for d in linear)
    for kind in ("binary", "prelu", "relu"):
        gaps = feature_discrepancy(Fig2Net(kind), loader)
        assert len(gaps) == 2 and all(d.mean_abs > 0 and d.relative > 0 for d in gaps)


def test_discrepancy_matches_a_direct_computation(generator):
    model = Fig2Net("binary").eval()
    images = torch.randn(4, 1, 28, 28, generator=generator)
    (first, _) = feature_discrepancy(model, DataLoader(TensorDataset(images, torch.zeros(4)),
                                                       batch_size=4))
    with torch.no_grad():
        x = model.stem(images)
        conv = model.blocks[0].conv
        y_b = conv(torch.sign(x))
        y_r = torch.nn.functional.conv2d(x, conv.weight, padding=1)
    assert first.mean_abs == pytest.approx((y_b - y_r).abs().mean().item(), rel=1e-6)
    per_image = (y_b - y_r).flatten(1).norm(dim=1) / y_r.flatten(1).norm(dim=1)
    assert first.relative == pytest.approx(per_image.mean().item(), rel=1e-6)


def test_mnist_source_prefers_the_npz_and_falls_back_to_digits(tmp_path, monkeypatch):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=np.zeros((1, 28, 28)), y_train=np.zeros(1),
             x_test=np.zeros((1, 28, 28)), y_test=np.zeros(1))
    overrides, message = mnist_source.choose(str(npz))
    assert overrides == f"data=mnist data.npz_path={npz}" and message.startswith("MNIST: using")

    def offline(self):
        raise DataNotFoundError("no network")

    monkeypatch.setattr(mnist_source.MNISTDataModule, "setup", offline)
    overrides, message = mnist_source.choose(str(tmp_path / "absent.npz"), str(tmp_path))
    assert overrides == "data=digits"
    assert message.startswith(f"MNIST not available ({tmp_path / 'absent.npz'} is not a file")
    assert "using the embedded 8×8 digits instead" in message and "\n" not in message


@pytest.mark.slow
def test_fig2_pipeline_end_to_end_on_digits(tmp_path):
    sweep = tmp_path / "fig2"
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", "-m", "experiment=fig2", "data=digits",
         "model.kind=linear,binary,prelu,relu", "seed=1,2", "trainer.max_epochs=1",
         "logger=none", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = subprocess.run([sys.executable, "-m", "ftbnn_exp.report", "fig2", str(sweep)],
                            capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = [line for line in (sweep / "fig2.md").read_text().splitlines()
            if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip() for row in rows] == list(KINDS)
    assert all(row.split("|")[2].strip() == "2" for row in rows)
    linear = rows[0].split("|")
    assert float(linear[4]) == 0.0 and float(linear[5]) == 0.0
    assert all(float(row.split("|")[5]) > 0 for row in rows[1:])
    assert (sweep / "fig2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (sweep / "fig2.csv").is_file()
