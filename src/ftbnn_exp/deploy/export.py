"""Export a trained checkpoint to packed bits, load it back, and verify it layer by layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ftbnn_exp.artifacts import (
    check_tensors,
    load_checkpoint,
    load_weights_exactly,
    model_from_checkpoint,
    model_from_metadata,
    reason,
    write_atomic,
)
from ftbnn_exp.deploy.bitops import binary_conv2d, pack_weights
from ftbnn_exp.deploy.layers import packed_layers, to_inference
from ftbnn_exp.errors import UserError
from ftbnn_exp.nn import BinaryConv2d

FORMAT = "ftbnn-exp-deploy/1"
LOGIT_TOLERANCE = 1e-4
"""Logits within this relative distance of PyTorch's differ by float rounding only."""


def export(checkpoint_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the inference model of ``checkpoint_path`` to ``out`` (whole or not at all);
    return the sizes."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(checkpoint)
    inference = to_inference(model)
    metadata = {k: v for k, v in checkpoint["ftbnn_exp"].items() if k != "source"}
    target = Path(out)
    if not target.parent.is_dir():
        raise UserError(f"export: folder '{target.parent}' of '{target}' does not exist")
    try:
        write_atomic(target, lambda stream: torch.save(
            {"format": FORMAT, "ftbnn_exp": metadata, "state_dict": inference.state_dict()},
            stream))
    except OSError as error:
        raise UserError(f"export: '{target}' cannot be written ({reason(error)})") from None
    return sizes(model, inference, Path(checkpoint_path), target)


PACKING = 64
"""A float model holds at most this many values per value of its export (1-bit weights in
int64 words): the bound that refuses a forged export's spec before it is built."""


def load_export(path: str | Path) -> nn.Module:
    """An export of :func:`export`, rebuilt from its spec (registered names only; nothing in
    the file is imported or called) and its packed weights; one line for a bad file."""
    return read_export(path)[0]


def read_export(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`load_export`'s model and the export's metadata (spec, data config, run)."""
    file = Path(path)
    try:
        exported = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"export '{file}' cannot be read: {reason(error)}") from None
    if (not isinstance(exported, dict) or exported.get("format") != FORMAT
            or not isinstance(exported.get("ftbnn_exp"), dict)
            or not isinstance(exported.get("state_dict"), dict)):
        raise UserError(f"'{file}' is not an ftbnn_exp export ({FORMAT}); make one with "
                        f"`python -m ftbnn_exp.deploy export <checkpoint> <out>`")
    metadata = {**exported["ftbnn_exp"], "source": f"export '{file}'"}
    check_tensors(exported, metadata["source"])
    stored = sum(t.numel() for t in exported["state_dict"].values()
                 if isinstance(t, torch.Tensor))
    with torch.device("meta"):
        needed = sum(p.numel() for p in model_from_metadata(metadata).parameters())
    if needed > PACKING * stored + 2**16:
        raise UserError(f"export '{file}': its spec describes a model of {needed} values, "
                        f"more than its {stored} stored values can hold")
    inference = to_inference(model_from_metadata(metadata))
    load_weights_exactly(inference, exported["state_dict"], metadata["source"])
    return inference.eval(), metadata


def sizes(model: nn.Module, inference: nn.Module, checkpoint: Path,
          exported: Path) -> dict[str, Any]:
    binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    binary_params = sum(m.weight.numel() for m in binary)
    all_params = sum(p.numel() for p in model.parameters())
    packed = sum(m.signs.numel() + m.nonzero.numel() for _, m in packed_layers(inference))
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {
        "checkpoint_bytes": checkpoint.stat().st_size,
        "fp32_weights_bytes": weights,
        "export_bytes": exported.stat().st_size,
        "binary_fp32_bytes": 4 * binary_params,
        "binary_packed_bytes": packed,
        # Table 4's Params: fp params + binary params / 32, i.e. bytes = 4·fp + binary / 8.
        "table4_params_bytes": 4 * (all_params - binary_params) + binary_params / 8,
    }


def describe_sizes(s: dict[str, Any]) -> str:
    def mb(n: float) -> str:
        return f"{n / 2**20:.3f} MB"

    """The export against the model's fp32 weights (the honest ratio: a checkpoint may also
    hold the optimizer's state, named beside it)."""
    return (f"export {mb(s['export_bytes'])} vs the model's fp32 weights "
            f"{mb(s['fp32_weights_bytes'])} ({s['fp32_weights_bytes'] / s['export_bytes']:.1f}× "
            f"smaller; the checkpoint file is {mb(s['checkpoint_bytes'])}); binary-conv weights "
            f"{mb(s['binary_fp32_bytes'])} fp32 -> {mb(s['binary_packed_bytes'])} packed "
            f"({s['binary_fp32_bytes'] / max(s['binary_packed_bytes'], 1):.1f}×); Table 4's "
            f"Params convention (fp + binary/32) predicts {mb(s['table4_params_bytes'])}")


@dataclass
class LayerCheck:
    name: str
    inputs: str
    shape: str
    outputs: int = 0
    mismatches: int = 0

    @property
    def exact(self) -> bool:
        return self.outputs > 0 and self.mismatches == 0


@torch.no_grad()
def verify(model: nn.Module, inference: nn.Module, loader: DataLoader,
           batches: int | None = None) -> tuple[list[LayerCheck], dict[str, Any]]:
    """Per binary conv: the bit-op engine's integers against ``F.conv2d`` of the sign-binarized
    input and weights (float64, exact); then the exported model's logits and top-1 against the
    float model's."""
    checks: dict[str, LayerCheck] = {}
    handles = []
    for name, conv in model.named_modules():
        if not isinstance(conv, BinaryConv2d):
            continue
        signs, nonzero = pack_weights(torch.sign(conv.binary_weight().detach()))
        shape = (f"{conv.in_channels}→{conv.out_channels} {conv.kernel_size[0]}×"
                 f"{conv.kernel_size[1]}/{conv.stride[0]} g{conv.groups}")
        checks[name] = LayerCheck(name, "", shape)

        def compare(module: BinaryConv2d, args: tuple, _: Tensor, name: str = name,
                    words: tuple[Tensor, Tensor] = (signs, nonzero)) -> None:
            x = args[0]
            expected = F.conv2d(x.double(), torch.sign(module.binary_weight()).double(), None,
                                module.stride, module.padding, module.dilation, module.groups)
            got = binary_conv2d(x, *words, module.kernel_size[0], module.stride[0],
                                module.padding[0], module.groups)
            check = checks[name]
            kind = "{0,1}" if bool((x >= 0).all()) else "±1"
            check.inputs = kind if check.inputs in ("", kind) else "mixed"
            check.outputs += got.numel()
            check.mismatches += int((got.double() != expected).sum())

        handles.append(conv.register_forward_hook(compare))
    agree = total = moved = 0
    worst = scale = 0.0
    try:
        for index, (images, _) in enumerate(loader):
            if batches is not None and index >= batches:
                break
            reference, deployed = model(images), inference(images)
            agree += int((reference.argmax(1) == deployed.argmax(1)).sum())
            total += images.shape[0]
            gap = (reference - deployed).abs().amax(dim=1)
            moved += int((gap > LOGIT_TOLERANCE * reference.abs().amax(dim=1).clamp(min=1)).sum())
            worst = max(worst, float(gap.max()))
            scale = max(scale, float(reference.abs().max()))
    finally:
        for handle in handles:
            handle.remove()
    summary = {"images": total, "top1_identical": agree, "max_logit_diff": worst,
               "max_logit": scale, "images_beyond_rounding": moved}
    return list(checks.values()), summary


def verify_table(checks: list[LayerCheck], summary: dict[str, Any]) -> tuple[str, bool]:
    """Each binary conv's check and the logits' summary, and whether all passed (the caller
    prints the verdict last, after its own checks)."""
    lines = [f"{'binary conv':34s} {'input':6s} {'shape':22s} {'outputs':>10s} "
             f"{'mismatches':>10s}  result"]
    for c in checks:
        lines.append(f"{c.name:34s} {c.inputs:6s} {c.shape:22s} {c.outputs:10d} "
                     f"{c.mismatches:10d}  {'exact' if c.exact else 'FAIL'}")
    passed = (all(c.exact for c in checks) and summary["images"] > 0
              and summary["top1_identical"] == summary["images"])
    lines.append(f"logits: max |Δ| {summary['max_logit_diff']:.3g} (max |logit| "
                 f"{summary['max_logit']:.3g}); beyond float rounding (relative "
                 f"{LOGIT_TOLERANCE:g}) on {summary['images_beyond_rounding']}/{summary['images']}"
                 f" images, where a folded-BN rounding flipped a sign downstream; top-1 identical"
                 f" on {summary['top1_identical']}/{summary['images']} images")
    return "\n".join(lines), passed
