"""Class predictions of an exported model (``deploy predict``, ``ftbnn_exp.predict``).

The images are prepared as the model's own test split was (its data set's
``image_transform``, read from the export's stored data config, never imported), so a file
of the kind the data hold scores as its test image does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn
from torchvision.datasets.folder import IMG_EXTENSIONS

from ftbnn_exp.artifacts import data_module, model_spec
from ftbnn_exp.errors import UserError

BATCH = 64
"""Images per forward pass."""


@dataclass(frozen=True)
class Prediction:
    """One image's most likely class, its softmax probability and the runner-up classes."""

    source: str
    label: int
    probability: float
    top: tuple[tuple[int, float], ...]

    def line(self) -> str:
        others = ", ".join(f"{label} {100 * p:.1f} %" for label, p in self.top[1:])
        return (f"{self.source}: class {self.label} ({100 * self.probability:.1f} %)"
                + (f"; then {others}" if others else ""))


def image_files(path: str | Path) -> list[Path]:
    """``path`` itself, or the image files under the folder ``path`` (sorted, recursive)."""
    target = Path(path)
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise UserError(f"'{target}' is neither an image file nor a folder")
    found = sorted(p for p in target.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not found:
        raise UserError(f"'{target}' holds no image file ({', '.join(IMG_EXTENSIONS)})")
    return found


def read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise UserError(f"'{path}' is not a readable image ({type(error).__name__})") from None


def transform_of(metadata: Mapping[str, Any]) -> Callable[[Image.Image], Tensor]:
    """The preparation of one image for the model an export or checkpoint holds."""
    channels = model_spec(metadata).kwargs.get("in_channels", 3)
    return data_module(metadata).image_transform(channels)


@torch.no_grad()
def predict_tensors(model: nn.Module, images: Tensor, sources: Iterable[str],
                    top: int = 3) -> list[Prediction]:
    """Predictions for a batch of prepared images (N, C, H, W)."""
    model.eval()
    found = []
    names = list(sources)
    for start in range(0, len(images), BATCH):
        probabilities = model(images[start:start + BATCH]).float().softmax(dim=1)
        values, labels = probabilities.topk(min(top, probabilities.shape[1]), dim=1)
        for row, (p, label) in enumerate(zip(values.tolist(), labels.tolist(), strict=True)):
            found.append(Prediction(names[start + row], label[0], p[0],
                                    tuple(zip(label, p, strict=True))))
    return found


def predict_files(model: nn.Module, metadata: Mapping[str, Any], path: str | Path,
                  top: int = 3) -> list[Prediction]:
    """Predictions for an image file or every image under a folder."""
    files = image_files(path)
    transform = transform_of(metadata)
    images = torch.stack([transform(read_image(file)) for file in files])
    return predict_tensors(model, images, (str(file) for file in files), top)
