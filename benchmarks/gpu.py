"""One GPU, side by side in one run (under 8 minutes): FTBNN-18 training images/s and peak
memory at 224 px, batch 256, for fp32, bf16-mixed + channels_last, + the lean binary block,
+ torch.compile; the input pipeline's images/s for every ``data.backend`` on generated
ImageNet-sized JPEGs beside the model's; then a short real training on a generated folder
through ``python -m ftbnn_exp trainer=gpu``, which writes metrics.json.
``--dry-run`` runs the same code on the CPU with tiny sizes, to check the script itself."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import baseline, machine
from benchmarks.data import available_backends, pipeline_rate, write_jpegs
from benchmarks.memory import without_lean
from ftbnn_exp.training.optim import OptimizerSpec, build_optimizer


@dataclass(frozen=True)
class Mode:
    name: str
    bf16: bool
    channels_last: bool
    lean: bool
    compile: bool


MODES = (
    Mode("fp32", False, False, False, False),
    Mode("bf16-mixed + channels_last", True, True, False, False),
    Mode("bf16-mixed + channels_last + lean", True, True, True, False),
    Mode("bf16-mixed + channels_last + lean + compile", True, True, True, True),
)


@dataclass(frozen=True)
class Sizes:
    device: torch.device
    batch: int
    image_size: int
    steps: int
    warmup: int
    images: int  # generated JPEGs
    data_batches: int
    trainer: str


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(mode: Mode, sizes: Sizes) -> tuple[float, float]:
    """Images/s and peak memory (GiB; 0 on the CPU) of ``steps`` training steps."""
    device, batch, size = sizes.device, sizes.batch, sizes.image_size
    model = baseline(size)
    model = (model if mode.lean else without_lean(model)).to(device)
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

    for _ in range(sizes.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(sizes.steps):
        step()
    synchronize(device)
    rate = batch * sizes.steps / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return rate, peak


def train_through_the_cli(root: Path, sizes: Sizes, backend: str, out: Path) -> dict:
    """One epoch of the baseline on the generated folder, as a user runs it."""
    run_dir = out / "gpu-run"
    command = [sys.executable, "-m", "ftbnn_exp", f"trainer={sizes.trainer}", "data=folder",
               f"data.root={root}", f"data.backend={backend}",
               f"data.image_size={sizes.image_size}", f"data.batch_size={sizes.batch}",
               f"data.num_workers={min(8, os.cpu_count() or 1)}", "trainer.max_epochs=1",
               "logger=csv", f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: the training run failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["wall_s"] = time.perf_counter() - start
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, batch 2, 64 px, 2 steps: checks the script, not the GPU")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=os.environ.get("OUT", "."),
                        help="where the training run's folder goes")
    args = parser.parse_args()
    if args.dry_run:
        sizes = Sizes(torch.device("cpu"), 2, 64, 2, 1, 16, 2, "cpu")
    else:
        if not torch.cuda.is_available():
            raise SystemExit("error: no CUDA GPU found; use --dry-run to check the script on CPU")
        sizes = Sizes(torch.device("cuda"), args.batch, 224, args.steps, 5, 2048, 6, "gpu")
        torch.backends.cudnn.benchmark = True
    device = sizes.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"FTBNN-18 training, {sizes.image_size} px, batch {sizes.batch}, {sizes.steps} steps "
          f"on {where}")
    modes = [m for m in MODES if not (m.compile and args.no_compile)]
    rates = {}
    for mode in modes:
        rate, peak = measure(mode, sizes)
        rates[mode.name] = rate
        print(f"  {mode.name:44s} {rate:9.1f} img/s  ({rate / rates['fp32']:.2f}× fp32)   "
              f"peak memory {peak:6.2f} GiB")
    best_mode = max(rates, key=rates.get)
    model = rates[best_mode]
    workers = os.cpu_count() or 1
    print(f"input pipeline on {device.type}, {sizes.image_size} px train crops from generated "
          f"500×375 JPEGs, batch {sizes.batch} ({workers} loader workers), against the model's "
          f"{model:.1f} img/s ({best_mode})")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "images"
        write_jpegs(root, sizes.images)
        data = {}
        for backend in available_backends():
            rate = pipeline_rate(root, workers, sizes.batch, sizes.data_batches, backend,
                                 device, sizes.image_size)
            data[backend] = rate
            side = "input pipeline" if rate < model else "model"
            print(f"  data.backend={backend:11s} {rate:9.1f} img/s   bottleneck: {side} "
                  f"({rate / model:.2f}× the model)")
        fastest = max(data, key=data.get)
        out = Path(args.out)
        metrics = train_through_the_cli(root, sizes, fastest, out)
    final = metrics.get("final", {})
    print(f"python -m ftbnn_exp trainer={sizes.trainer} data=folder data.backend={fastest}: "
          f"{metrics['status']}, {metrics['wall_s']:.0f} s in all, test top-1 "
          f"{final.get('test/top1', float('nan')):.2f} %; metrics.json in {out / 'gpu-run'}")


if __name__ == "__main__":
    main()
