"""``data.backend``: images decoded and cut where the model runs (torchvision's decoders, NVIDIA
DALI's CPU operators here) agree with the PIL path crop for crop, resume exactly, name bad
files, and train through the CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ftbnn_exp.data import FolderDataModule
from ftbnn_exp.data.backends import EncodedBatch, collate_encoded
from ftbnn_exp.data.loading import EpochLoader, EpochSampler, SeededSamples
from ftbnn_exp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    CifarCrop,
    He2016,
    Inception,
)
from ftbnn_exp.errors import CorruptImageError, InvalidArgument, UserError

NEEDS_DALI = pytest.mark.skipif(not importlib.util.find_spec("nvidia.dali"),
                                reason="NVIDIA DALI not installed (pip install 'ftbnn-exp[dali]')")
BACKENDS = ["torchvision", pytest.param("dali", marks=NEEDS_DALI)]
AUGMENTS = [He2016(), Inception(), CifarCrop(), Augment()]
SIZES = [(90, 120), (130, 100), (111, 111)]
CPU = torch.device("cpu")
IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def coordinate_folder(root: Path) -> Path:
    """Lossless PNGs whose red channel is the pixel's column and green its row: after any
    resize and crop, an output pixel's values say where in the source it came from."""
    for split in ("train", "val"):
        for label, (height, width) in enumerate(SIZES):
            rows, cols = np.mgrid[0:height, 0:width]
            pixels = np.stack([cols, rows, np.full_like(rows, 128)], -1).astype(np.uint8)
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            Image.fromarray(pixels).save(folder / "0.png")
    return root


def photo_folder(root: Path, count: int = 4, size: int = 48) -> Path:
    """Smooth RGB JPEGs of two classes."""
    rows, cols = np.mgrid[0:size, 0:size]
    for split in ("train", "val"):
        for i in range(count):
            pixels = np.stack([127 + 120 * np.sin(cols / (5 + i)), 127 + 120 * np.cos(rows / 7),
                               127 + 100 * np.sin((rows + cols) / 11)], -1).astype(np.uint8)
            folder = root / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=95)
    return root


def module(root: Path, backend: str, **kwargs) -> FolderDataModule:
    kwargs.setdefault("mean", [0.0, 0.0, 0.0])
    kwargs.setdefault("std", [1 / 255] * 3)  # outputs in source pixel values
    datamodule = FolderDataModule(seed=0, root=str(root), backend=backend, **kwargs)
    datamodule.setup()
    return datamodule


def decoded(datamodule: FolderDataModule, split: str, key: tuple[int, int]) -> torch.Tensor:
    item = SeededSamples(getattr(datamodule, split), seed=3)[key]
    images, labels = datamodule.decoder(collate_encoded([item]), CPU)
    assert labels.tolist() == [item[2]]
    return images[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("augment", AUGMENTS, ids=lambda a: type(a).__name__)
def test_every_crop_comes_from_where_the_pil_path_takes_it(tmp_path, backend, augment):
    """Same seed, same image: the device backend's output pixels come from the same source
    positions as the PIL path's (within one output pixel), flips included."""
    root = coordinate_folder(tmp_path / "coords")
    pil = module(root, "pil", image_size=32, augment=augment)
    device = module(root, backend, image_size=32, augment=augment)
    unit = 1 if augment.divide_std else 255  # mean-only: [0, 1] values
    for split in ("train_set", "val_set"):
        for index, (height, width) in enumerate(SIZES):
            for epoch in range(4):
                key = (epoch, index)
                want = SeededSamples(getattr(pil, split), seed=3)[key][0] * unit
                got = decoded(device, split, key) * unit
                shift = 1.5 * min(height, width) / 32 + 1  # source pixels per output pixel
                # compared away from the border and from padding (blue 0, not 128): the PIL
                # path pads after resizing, the backends resize the padded window
                content = (want[2] > 64).float()[None]
                solid = -F.max_pool2d(-content, 3, 1, 1)[0] > 0
                solid[:2], solid[-2:], solid[:, :2], solid[:, -2:] = False, False, False, False
                error = (got - want)[:2, solid].abs().amax()
                assert error <= shift, (split, index, epoch, float(error))
                assert torch.allclose(got[2, solid], want[2, solid], atol=1.0)
                assert ((got[2] > 64).sum() - content.sum()).abs() <= 2 * 32  # padding alike
                assert got[0, solid].std() > 2  # a real crop, not a constant


@pytest.mark.parametrize("backend", BACKENDS)
def test_jpegs_decode_as_pil_decodes_them_and_normalise_alike(tmp_path, backend):
    """The whole image at its own size: only the decoders differ (both libjpeg-turbo), and
    normalisation (ImageNet's statistics, or mean subtraction only) is the PIL path's."""
    root = photo_folder(tmp_path / "photos")
    for augment in (Augment(), Augment(divide_std=False)):
        pil = module(root, "pil", image_size=48, augment=augment, **IMAGENET)
        device = module(root, backend, image_size=48, augment=augment, **IMAGENET)
        for index in range(4):
            want = SeededSamples(pil.val_set, seed=3)[(0, index)][0]
            got = decoded(device, "val_set", (0, index))
            assert got.shape == want.shape == (3, 48, 48)
            assert (got - want).abs().amax() <= 3 / 255 / min(device.cut.std)


def test_backends_cut_the_same_crops(tmp_path):
    """DALI's pipeline and torchvision's decoders make the same crops of the same windows."""
    pytest.importorskip("nvidia.dali")
    root = photo_folder(tmp_path / "photos", size=64)
    tv = module(root, "torchvision", image_size=32, augment=Inception())
    dali = module(root, "dali", image_size=32, augment=Inception())
    for index in range(4):
        a, b = decoded(tv, "train_set", (5, index)), decoded(dali, "train_set", (5, index))
        assert (a - b).abs().mean() < 2.0, index  # pixel values, 0-255


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resumed_loader_continues_with_the_same_decoded_batches(tmp_path, backend):
    root = photo_folder(tmp_path / "photos", count=8)
    datamodule = module(root, backend, image_size=32, augment=He2016(), batch_size=2)

    def loader() -> EpochLoader:
        return EpochLoader(SeededSamples(datamodule.train_set, 5), batch_size=2,
                           sampler=EpochSampler(len(datamodule.train_set), True, 5, epoch=2),
                           collate_fn=collate_encoded)

    first = loader()
    batches = iter(first)
    next(batches)
    state = first.state_dict()
    continued = [datamodule.decoder(batch, CPU) for batch in batches]
    resumed = loader()
    resumed.load_state_dict(state)
    again = [datamodule.decoder(batch, CPU) for batch in resumed]
    assert len(again) == len(continued) == 3
    for (x, y), (x2, y2) in zip(continued, again, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_undecodable_jpeg_is_named_or_skipped(tmp_path, backend):
    root = photo_folder(tmp_path / "photos")
    bad = root / "train" / "c0" / "0.jpg"
    data = bad.read_bytes()
    bad.write_bytes(data[:400] + bytes(len(data) - 400))  # header intact, scan data zeroed
    strict = module(root, backend, image_size=32)
    items = [SeededSamples(strict.train_set, 0)[(0, i)] for i in range(4)]
    with pytest.raises(CorruptImageError, match=re.escape("c0/0.jpg")):
        strict.decoder(collate_encoded(items), CPU)
    skipping = FolderDataModule(seed=0, root=str(root), backend=backend, image_size=32,
                                skip_corrupt=True)
    skipping.use_run_dir(tmp_path)
    skipping.setup()
    images, labels = skipping.decoder(collate_encoded(items), CPU)
    assert len(images) == len(labels) == 3
    assert skipping.skipped_samples() == [str(bad)]
    # through the data module's own loader, as training reads it
    batch = next(iter(skipping.val_dataloader()))
    assert isinstance(batch, EncodedBatch) and len(skipping.decoder(batch, CPU)[0]) == 4


def test_a_bad_backend_and_a_missing_dali_are_one_line_errors(tmp_path, monkeypatch):
    message = "data.backend='gpu' is not allowed; allowed: pil, torchvision, dali"
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        FolderDataModule(seed=0, root=str(tmp_path), backend="gpu")
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # an import that fails
    root = photo_folder(tmp_path / "photos")
    datamodule = module(root, "dali", image_size=32)
    items = [SeededSamples(datamodule.train_set, 0)[(0, 0)]]
    with pytest.raises(UserError, match=r"data.backend=dali needs NVIDIA DALI: pip install"):
        datamodule.decoder(collate_encoded(items), CPU)


@pytest.mark.parametrize("backend", [
    "torchvision", pytest.param("dali", marks=[NEEDS_DALI, pytest.mark.slow])])
def test_training_through_the_cli_on_a_device_backend(tmp_path, backend):
    root = photo_folder(tmp_path / "photos", count=8)
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "ftbnn_exp", "data=folder", f"data.root={root}",
         f"data.backend={backend}", "data.image_size=32", "data.batch_size=4",
         "data.num_workers=1", "model=fig2", "model.bottleneck=null", "trainer.max_epochs=1",
         "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["config"]["data"]["backend"] == backend
    assert metrics["final"]["test/top1"] >= 0


@pytest.mark.parametrize(("augment", "message"), [
    (lambda: He2016(flip="abc"), "augment.flip='abc' must be a finite number"),
    (lambda: Inception(flip=1.5), "augment.flip=1.5 must be a probability in [0, 1]"),
    (lambda: Inception(scale=(0.9, 0.1)), "augment.scale=[0.9, 0.1] must be [low, high]"),
    (lambda: CifarCrop(padding="4"), "augment.padding='4' must be an integer"),
])
def test_bad_augment_values_are_one_line_errors(augment, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        augment()
