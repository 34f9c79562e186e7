"""Realistic data at any resolution (image folders, CIFAR trees) and the ``augment=`` options:
train and eval agree in scale; a 32 px folder trains and tests as it should."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torchvision.transforms import v2

from ftbnn_exp.app.build import build_datamodule
from ftbnn_exp.app.config import compose_config
from ftbnn_exp.data import (
    CIFARDataModule,
    DigitsDataModule,
    FolderDataModule,
    MNISTDataModule,
    SyntheticDataModule,
)
from ftbnn_exp.data.folder import stratified_holdout
from ftbnn_exp.data.stats import channel_stats
from ftbnn_exp.data.transforms import (
    Augment,
    CifarCrop,
    He2016,
    Inception,
    Normalization,
    ScaleJitter,
)
from ftbnn_exp.data.vision import CIFAR_MEAN, CIFAR_STD
from ftbnn_exp.errors import DataNotFoundError

AUGMENTS = [He2016(), Inception(), CifarCrop(), Augment()]


def digits_folder(root: Path, per_split: dict[str, int], size: int = 32) -> Path:
    """The embedded digits, upscaled to ``size`` px grayscale PNGs, as root/<split>/<class>/."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    start = 0
    for split, count in per_split.items():
        for i in order[start:start + count]:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, "L").resize((size, size), Image.BILINEAR).save(
                folder / f"{i}.png")
        start += count
    return root


def square_image(size: int, square: int, mode: str = "RGB") -> Image.Image:
    """A white centred ``square`` on black: how much of it survives shows the field of view."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    lo = (size - square) // 2
    pixels[lo:lo + square, lo:lo + square] = 255
    return Image.fromarray(pixels).convert(mode)


PLAIN = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("augment", AUGMENTS, ids=lambda a: type(a).__name__)
def test_eval_of_an_image_of_the_training_size_keeps_the_augments_field_of_view(augment):
    """32 px in, 32 px out: a whole-image option returns the image itself; the ImageNet
    recipes keep the central 224/256 of it (not the middle 4×4 of an upscale to 256)."""
    image = square_image(32, 16)
    out = augment.eval(32, 3, PLAIN)(image)
    assert out.shape == (3, 32, 32)
    if augment.eval_crop == 1.0:
        expected = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(image)
        assert torch.equal(out, expected)
    else:
        assert augment.eval_resize(32) == round(32 * 256 / 224) == 37
        white = float((out > 0.5).float().mean())
        assert white == pytest.approx((16 * 37 / 32) ** 2 / 32**2, abs=0.03)


def test_train_and_eval_agree_in_scale():
    """Evaluation's scale lies inside the range training draws from, for every option."""
    for size in (32, 224):
        jitter = next(t for t in He2016().crop(size) if isinstance(t, ScaleJitter))
        assert jitter.low <= He2016().eval_resize(size) <= jitter.high
        assert (jitter.low, jitter.high) == ((256, 480) if size == 224 else (37, 69))
    low, high = Inception().scale
    assert low <= Inception().eval_crop ** 2 <= high
    image = square_image(32, 16)
    for augment in (CifarCrop(), Augment()):
        torch.manual_seed(0)
        crops = torch.stack([augment.train(32, 3, PLAIN)(image) for _ in range(16)])
        # pad-4 crops shift the square by at most 4 px; its area is the eval image's
        assert crops.shape == (16, 3, 32, 32)
        assert float((crops > 0.5).float().mean()) == pytest.approx(0.25, abs=0.02)


def test_he2016_subtracts_the_mean_and_divides_by_the_std_only_when_asked():
    image = Image.new("RGB", (40, 40), (128, 128, 128))
    norm = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    plain = He2016().eval(32, 3, norm)(image)
    divided = He2016(divide_std=True).eval(32, 3, norm)(image)
    assert torch.allclose(plain, torch.full_like(plain, 128 / 255 - 0.5))
    assert torch.allclose(divided, plain / 0.25)


def _tensor_modules(tmp_path: Path) -> list:
    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (60, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 60, dtype=np.uint8),
             x_test=rng.integers(0, 255, (10, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 10, dtype=np.uint8))
    return [DigitsDataModule(seed=0), MNISTDataModule(seed=0, npz_path=str(path), val_size=10),
            SyntheticDataModule(seed=0, image_size=16, train_count=8, val_count=4, test_count=4)]


def test_every_data_module_evaluates_images_at_its_training_size(tmp_path):
    """Tensor data sets store images at their size (evaluation is the image itself); folder
    and CIFAR modules evaluate an image of the training size at the same size."""
    modules = _tensor_modules(tmp_path)
    folder = digits_folder(tmp_path / "digits32", {"train": 60, "val": 20})
    modules += [FolderDataModule(seed=0, root=str(folder), image_size=32, augment=Augment()),
                FolderDataModule(seed=0, name="imagenet", root=str(folder), image_size=32),
                CIFARDataModule(seed=0, root=str(digits_folder(tmp_path / "cifar", {"train": 60,
                                                                             "test": 20})))]
    for module in modules:
        module.setup("fit")
        spec = module.spec
        for split in (module.val_set, module.test_set):
            assert split[0][0].shape == (spec.in_channels, spec.image_size, spec.image_size)
    whole = modules[3]
    image = whole.val_set[0][0]
    raw = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                      whole.normalization.transform(1)])(
        Image.open(whole.val_set.samples[0][0]).convert("L"))
    assert torch.equal(image, raw)  # the whole 32 px image, only normalised


def test_folder_layout_channels_classes_and_holdout(tmp_path):
    root = digits_folder(tmp_path / "d", {"train": 200, "test": 50}, size=24)
    module = FolderDataModule(seed=0, root=str(root), image_size=24, val_fraction=0.2, split_seed=3)
    module.setup()
    assert module.spec.in_channels == 1 and module.spec.num_classes == 10
    assert len(module.val_set) + len(module.train_set) == 200 and len(module.test_set) == 50
    held = [module.val_set.dataset.targets[i] for i in module.val_set.indices]
    counts = np.bincount(held, minlength=10)
    per_class = np.bincount(module.train_set.dataset.targets, minlength=10)
    assert all(abs(c - round(0.2 * n)) <= 0 for c, n in zip(counts, per_class, strict=True))
    again = stratified_holdout(module.train_set.dataset.targets, 0.2, 3)
    assert again[1] == sorted(module.val_set.indices)  # seeded
    with pytest.raises(DataNotFoundError, match=r"data\.num_classes=7 but .* has 10"):
        _ = FolderDataModule(seed=0, root=str(root), num_classes=7).spec
    with pytest.raises(DataNotFoundError, match=r"data\.in_channels=3 but .* has 1"):
        FolderDataModule(seed=0, root=str(root), num_classes=10, in_channels=3).setup()
    stats = subprocess.run([sys.executable, "-m", "ftbnn_exp.data.stats", str(root)],
                           capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr
    mean, std = channel_stats(str(root), size=64)
    assert stats.stdout.strip() == f"data.mean=[{mean[0]:.4f}] data.std=[{std[0]:.4f}]"
    assert 0.05 < mean[0] < 0.6 and 0.1 < std[0] < 0.5
    (root / "test" / "zz").mkdir()
    with pytest.raises(DataNotFoundError, match="has classes that train/ lacks: zz"):
        _ = FolderDataModule(seed=0, root=str(root)).classes


def test_cifar_from_an_image_folder_tree_uses_cifars_crop_and_statistics(tmp_path):
    root = tmp_path / "cifar"
    for split, count in (("train", 3), ("test", 2)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (32, 32), (label * 20, 100, 200)).save(folder / f"{i}.png")
    module = CIFARDataModule(seed=0, root=str(root))
    module.setup()
    assert isinstance(module.augment, CifarCrop) and module.spec.num_classes == 10
    assert len(module.test_set) == 20 and len(module.val_set) == 10  # one per class held out
    image, label = module.test_set[0]
    expected = (torch.tensor([0, 100, 200]) / 255 - torch.tensor(CIFAR_MEAN["cifar10"])) / \
        torch.tensor(CIFAR_STD["cifar10"])
    assert torch.allclose(image[:, 5, 5], expected, atol=1e-6)
    with pytest.raises(DataNotFoundError, match=r"data\.num_classes=100 but"):
        CIFARDataModule(seed=0, name="cifar100", root=str(root)).setup()


def test_table3_overlay_uses_he2016_and_inception_switches(tmp_path):
    common = ["experiment=table3/baseline", "data=imagenet", f"data.root={tmp_path}"]
    assert isinstance(build_datamodule(compose_config(common)).augment, He2016)
    switched = build_datamodule(compose_config([*common, "augment=inception"]))
    assert isinstance(switched.augment, Inception)
    assert isinstance(build_datamodule(compose_config(["data=cifar10"])).augment, CifarCrop)


def _train(tmp_path: Path, *overrides: str) -> dict:
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "ftbnn_exp", *overrides, "logger=none",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_table3_baseline_trains_on_a_tiny_imagenet_folder(tmp_path):
    root = digits_folder(tmp_path / "tiny", {"train": 40, "val": 20}, size=40)
    metrics = _train(tmp_path, "experiment=table3/baseline", "data=imagenet",
                     f"data.root={root}", "data.num_classes=10", "data.in_channels=1",
                     "data.image_size=32", "data.batch_size=16", "data.num_workers=0",
                     "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    assert metrics["status"] == "completed"
    assert metrics["config"]["augment"]["_target_"] == "ftbnn_exp.data.transforms.He2016"
    assert metrics["config"]["data"]["augment"] == metrics["config"]["augment"]


@pytest.mark.parametrize(("augment", "check"), [
    pytest.param("none", lambda train, test: abs(train - test) <= 5 and test >= 90,
                 marks=pytest.mark.slow),  # he2016, the harder case, stays in the default run
    # he2016's random scales make training harder than evaluation, never the reverse
    ("he2016", lambda train, test: test >= train - 3 and test >= 60),
])
def test_a_32px_folder_trains_and_tests_alike(tmp_path, augment, check):
    root = digits_folder(tmp_path / "digits32", {"train": 800, "test": 200})
    metrics = _train(tmp_path, "data=folder", f"data.root={root}", "data.image_size=32",
                     "data.num_workers=0", f"augment={augment}", "model=fig2",
                     "model.kind=prelu", "model.bottleneck=null", "trainer.max_epochs=8")
    train, test = metrics["final"]["train/top1"], metrics["final"]["test/top1"]
    assert check(train, test), (train, test)
