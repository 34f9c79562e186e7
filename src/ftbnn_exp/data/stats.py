"""``python -m ftbnn_exp.data.stats <root> [--size 64] [--limit 10000]``: a folder's per-channel
mean and std, printed as the overrides ``data.mean=[...] data.std=[...]``.

Over ``root/train`` (every image, or a seeded sample of ``--limit``), each resized to
``--size`` on its shorter side and centre-cropped: statistics of what the model sees, at a
fraction of the cost of full-size images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from ftbnn_exp.data.folder import CheckedImageFolder, FolderDataModule
from ftbnn_exp.errors import UserError


def channel_stats(root: str, size: int = 64, limit: int | None = None, workers: int = 0
                  ) -> tuple[list[float], list[float]]:
    """(mean, std) per channel of ``root/train``'s images, in [0, 1] units."""
    module = FolderDataModule(seed=0, root=root, image_size=size)
    transform = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToImage(),
                            v2.ToDtype(torch.float32, scale=True)])
    images = CheckedImageFolder(Path(root) / "train", transform, module.spec.in_channels,
                                classes=module.classes)
    dataset = images
    if limit is not None and limit < len(images):
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        dataset = Subset(images, order[:limit].tolist())
    total = squares = None
    count = 0
    for batch, _ in DataLoader(dataset, batch_size=64, num_workers=workers):
        pixels = batch.double().transpose(0, 1).flatten(1)
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        squares = (pixels ** 2).sum(1) if squares is None else squares + (pixels ** 2).sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = (squares / count - mean ** 2).clamp(min=0).sqrt()
    return mean.tolist(), std.tolist()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftbnn_exp.data.stats",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        mean, std = channel_stats(args.root, args.size, args.limit, args.workers)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"data.mean=[{','.join(f'{v:.4f}' for v in mean)}] "
          f"data.std=[{','.join(f'{v:.4f}' for v in std)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
