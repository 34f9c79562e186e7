"""Training-step time, side by side in one process: the Lightning module vs a plain PyTorch loop
(target: ≤ 5 % overhead), and eager vs ``torch.compile`` (the ``compile=true`` option)."""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import baseline, machine, verdict
from ftbnn_exp.training.module import ClassificationModule
from ftbnn_exp.training.optim import OptimizerSpec, build_optimizer

OVERHEAD_TARGET = 1.05


class StepTimes(L.Callback):
    """Seconds from one training batch's start to the next one's (data loading included)."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, *args, **kwargs) -> None:
        self.starts.append(time.perf_counter())


def loader(batch: int, size: int, steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch * steps, 3, size, size, generator=generator)
    labels = torch.randint(0, 1000, (batch * steps,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=batch)


def lightning_steps(model: torch.nn.Module, data: DataLoader, warmup: int) -> list[float]:
    timer = StepTimes()
    module = ClassificationModule(model, 1000, OptimizerSpec())
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, callbacks=[timer],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, train_dataloaders=data)
    return [b - a for a, b in zip(timer.starts, timer.starts[1:], strict=False)][warmup:]


def plain_steps(model: torch.nn.Module, data: DataLoader, warmup: int) -> list[float]:
    model.train()
    optimizer = build_optimizer(model, OptimizerSpec())
    times, start = [], time.perf_counter()
    for images, labels in data:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args()
    print(f"training step, FTBNN-18 at {args.image_size} px, batch {args.batch} ({machine()})")
    model = baseline(args.image_size)
    data = loader(args.batch, args.image_size, args.warmup + args.steps)
    lightning, plain = [], []
    for _ in range(args.rounds):  # alternated, so drifts of the machine hit both alike
        plain += plain_steps(copy.deepcopy(model), data, args.warmup)
        lightning += lightning_steps(copy.deepcopy(model), data, args.warmup)
    a, b = statistics.median(lightning), statistics.median(plain)
    print(f"  Lightning module {a * 1e3:8.1f} ms/step   plain loop {b * 1e3:8.1f} ms/step   "
          f"ratio {verdict(a / b, OVERHEAD_TARGET, higher_is_better=False)}")
    plain_graph = copy.deepcopy(model)
    for module in plain_graph.modules():
        if hasattr(module, "lean_backward"):
            module.lean_backward = False
    unfused = statistics.median(plain_steps(plain_graph, data, args.warmup))
    print(f"  lean autograd    {b * 1e3:8.1f} ms/step   plain autograd {unfused * 1e3:7.1f} ms/step"
          f"   ratio {b / unfused:.3f}×  (the cost of recomputing binary convs in backward)")
    if args.no_compile:
        return
    start = time.perf_counter()
    compiled = copy.deepcopy(model)
    compiled.compile()
    compiled_steps = plain_steps(compiled, data, args.warmup)
    took = time.perf_counter() - start
    c = statistics.median(compiled_steps)
    print(f"  eager            {b * 1e3:8.1f} ms/step   torch.compile {c * 1e3:8.1f} ms/step   "
          f"speed-up {b / c:.2f}×  (compilation and warm-up took {took:.0f} s)")


if __name__ == "__main__":
    main()
