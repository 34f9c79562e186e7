"""Reading this framework's training checkpoints (Lightning ``.ckpt`` with our metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ftbnn_exp.errors import UserError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint of ``ftbnn_exp``; a one-line :class:`UserError` otherwise."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"checkpoint '{file}' is not a file")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint '{file}' cannot be read: {error}") from error
    if "ftbnn_exp" not in checkpoint or "state_dict" not in checkpoint:
        raise UserError(f"checkpoint '{file}' was not written by ftbnn_exp training")
    return checkpoint


def model_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's own state dict (the LightningModule keeps it under ``model.``)."""
    return {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
            if key.startswith("model.")}
