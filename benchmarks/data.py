"""Is the input pipeline or the model the bottleneck? Images/s of the ImageNet train pipeline
(JPEG decode + Appendix C's augmentation) per ``data.backend`` and worker count, beside the
model's training-step throughput, measured in one run on generated ImageNet-sized JPEGs."""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.common import baseline, machine
from ftbnn_exp.data import FolderDataModule
from ftbnn_exp.data.backends import BACKENDS
from ftbnn_exp.timing import timed_rounds
from ftbnn_exp.training.optim import OptimizerSpec, build_optimizer

IMAGENET_MEAN_SIZE = (500, 375)
"""About the mean ILSVRC 2012 train image (width, height)."""


def write_jpegs(root: Path, count: int, classes: int = 4) -> None:
    rng = np.random.default_rng(0)
    width, height = IMAGENET_MEAN_SIZE
    # Smooth noise compresses like a photo, not like white noise.
    for i in range(count):
        small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        for split in ("train", "val"):
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i}.JPEG", quality=90)


def available_backends() -> list[str]:
    """The ``data.backend`` options this machine runs (DALI only where it is installed)."""
    return [b for b in BACKENDS if b != "dali" or importlib.util.find_spec("nvidia.dali")]


def pipeline_rate(root: Path, workers: int, batch: int, batches: int, backend: str = "pil",
                  device: torch.device | None = None, image_size: int = 224) -> float:
    """Images/s delivered on ``device`` (decoded and augmented there by a device backend)."""
    device = device or torch.device("cpu")
    dm = FolderDataModule(seed=0, name="imagenet", root=str(root), num_classes=4, batch_size=batch,
                          num_workers=workers, prefetch_factor=4 if workers else None,
                          backend=backend, image_size=image_size,
                          pin_memory=device.type == "cuda")
    dm.setup()

    return loader_rate(dm, device, batches)


def loader_rate(dm: Any, device: torch.device, batches: int) -> float:
    """Images/s of ``dm``'s training loader delivered on ``device`` over ``batches`` batches;
    worker start-up and pipeline building (the first batch) are not throughput."""

    def batches_on_device() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = dm.train_dataloader()  # one loader: its persistent workers start once
        while True:
            for encoded in loader:
                yield dm.transfer_batch_to_device(encoded, device, 0)

    iterator = batches_on_device()
    next(iterator)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        seen += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def model_rate(batch: int, image_size: int) -> float:
    model = baseline(image_size)
    optimizer = build_optimizer(model, OptimizerSpec())
    images = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, 1000, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return batch / statistics.median(timed_rounds(step, repeats=3, warmup=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="*",
                        default=sorted({0, 1, 2, os.cpu_count() or 1}))
    parser.add_argument("--backends", nargs="*", default=available_backends(),
                        choices=BACKENDS)
    args = parser.parse_args()
    print(f"input pipeline vs model, 224 px train crops from {IMAGENET_MEAN_SIZE[0]}×"
          f"{IMAGENET_MEAN_SIZE[1]} JPEGs, on the CPU ({machine()})")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_jpegs(root, args.images)
        rates = {(backend, w): pipeline_rate(root, w, args.batch, args.batches, backend)
                 for backend in args.backends for w in args.workers}
    model = model_rate(args.batch, 224)
    for (backend, workers), rate in rates.items():
        side = "input pipeline" if rate < model else "model"
        print(f"  {backend:11s} {workers:2d} workers: pipeline {rate:8.1f} img/s   model train "
              f"step {model:8.1f} img/s   bottleneck: {side} ({rate / model:.2f}×)")


if __name__ == "__main__":
    main()
