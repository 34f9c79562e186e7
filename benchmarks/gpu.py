"""FTBNN-18 training throughput and peak memory on one GPU at 224 px, batch 256: fp32 vs
bf16-mixed + channels_last (+ torch.compile), side by side in one run (under 5 minutes).
``--dry-run`` runs the same code on the CPU with tiny sizes, to check the script itself."""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.common import baseline, machine
from ftbnn_exp.training.optim import OptimizerSpec, build_optimizer


@dataclass(frozen=True)
class Mode:
    name: str
    bf16: bool
    channels_last: bool
    compile: bool


MODES = (
    Mode("fp32", False, False, False),
    Mode("bf16-mixed + channels_last", True, True, False),
    Mode("bf16-mixed + channels_last + compile", True, True, True),
)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: Mode, device: torch.device, batch: int, size: int, steps: int,
            warmup: int) -> tuple[float, float]:
    """Images/s and peak memory (GiB; 0 on the CPU) of ``steps`` training steps."""
    model = baseline(size).to(device)
    memory_format = torch.channels_last if mode.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if mode.compile:
        model.compile()
    optimizer = build_optimizer(model, OptimizerSpec())
    images = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=memory_format)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if mode.bf16
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    rate = batch * steps / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return rate, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, batch 2, 64 px, 2 steps: checks the script, not the GPU")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if args.dry_run:
        device, batch, size, steps, warmup = torch.device("cpu"), 2, 64, 2, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA GPU found; use --dry-run to check the script on CPU")
        device, batch, size, steps, warmup = torch.device("cuda"), args.batch, 224, args.steps, 5
        torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"FTBNN-18 training, {size} px, batch {batch}, {steps} steps on {where}")
    modes = [m for m in MODES if not (m.compile and args.no_compile)]
    reference = None
    for mode in modes:
        rate, peak = measure(mode, device, batch, size, steps, warmup)
        reference = reference or rate
        print(f"  {mode.name:38s} {rate:9.1f} img/s  ({rate / reference:.2f}× fp32)   "
              f"peak memory {peak:6.2f} GiB")


if __name__ == "__main__":
    main()
