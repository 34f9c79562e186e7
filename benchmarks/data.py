"""Is the input pipeline or the model the bottleneck? Images/s of the ImageNet train pipeline
(JPEG decode + Appendix C's augmentation) per worker count, beside the model's training-step
throughput, measured in one run on generated ImageNet-sized JPEGs."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.common import baseline, machine, median_seconds
from ftbnn_exp.data import FolderDataModule
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


def pipeline_rate(root: Path, workers: int, batch: int, batches: int) -> float:
    dm = FolderDataModule(name="imagenet", root=str(root), num_classes=4, batch_size=batch,
                            num_workers=workers, prefetch_factor=4 if workers else None)
    dm.setup()
    iterator = iter(dm.train_dataloader())
    next(iterator)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            images, _ = next(iterator)
        except StopIteration:
            iterator = iter(dm.train_dataloader())
            images, _ = next(iterator)
        seen += images.shape[0]
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

    return batch / median_seconds(step, repeats=3, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="*",
                        default=sorted({0, 1, 2, os.cpu_count() or 1}))
    args = parser.parse_args()
    print(f"input pipeline vs model, 224 px train crops from {IMAGENET_MEAN_SIZE[0]}×"
          f"{IMAGENET_MEAN_SIZE[1]} JPEGs ({machine()})")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_jpegs(root, args.images)
        rates = {w: pipeline_rate(root, w, args.batch, args.batches) for w in args.workers}
    model = model_rate(args.batch, 224)
    for workers, rate in rates.items():
        side = "input pipeline" if rate < model else "model"
        print(f"  {workers:2d} workers: pipeline {rate:8.1f} img/s   model train step "
              f"{model:8.1f} img/s   bottleneck: {side} ({rate / model:.2f}×)")


if __name__ == "__main__":
    main()
