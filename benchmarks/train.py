"""Training throughput through the data path users run (issue 32): ``python -m ftbnn_exp``
(Lightning module, our resumable seeded loaders, checkpoints, loggers) against a minimal plain
PyTorch loop (a ``DataLoader`` with ``shuffle=True`` over the same dataset, the same model,
optimizer, batch and workers), per data source and mode, rounds alternated, in one run.

Data it writes itself, in the formats users give: the embedded digits; an ``mnist.npz`` in
Keras' layout (generated strokes); an image folder of 32×32 JPEGs (``data=folder``); a CIFAR-10
image tree (``data=cifar10``, ``root/train/<class>``, ``root/test/<class>``). The Fig. 2 model
(``experiment=fig2``) trains on digits and MNIST, FTBNN-18 (small-input stem) on the 32 px ones.
Modes: fp32, channels_last, bf16 autocast (only where ``torch.backends.cpu`` reports a
CPU with bf16 arithmetic), ``compile=true``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.common import machine
from ftbnn_exp.app.build import build_datamodule, build_model, model_spec
from ftbnn_exp.app.config import compose_config, specs
from ftbnn_exp.training.optim import build_optimizer

TARGET = 0.9
"""Ours ≥ 0.9× the plain loop's images/s (issue 32)."""

MODES = {
    "fp32": [],
    "channels_last": ["channels_last=true"],
    "bf16": ["trainer.precision=bf16-mixed"],
    "compile": ["compile=true"],
}


class StepTimes(L.Callback):
    """Writes the start time of every training batch (and the end of training) to ``path``
    as JSON: given on the command line as ``+callbacks.bench={_target_: ...}``."""

    def __init__(self, path: str) -> None:
        self.path, self.starts = Path(path), []

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append(time.perf_counter())
        self.path.write_text(json.dumps(self.starts))


def write_sources(root: Path, images: int) -> dict[str, list[str]]:
    """Each data source's overrides, its files written under ``root``."""
    rng = np.random.default_rng(0)
    npz = root / "mnist.npz"
    strokes = (rng.random((images, 28, 28)) > 0.8).astype(np.uint8) * 255
    labels = rng.integers(0, 10, images).astype(np.uint8)
    np.savez(npz, x_train=strokes, y_train=labels, x_test=strokes[:256], y_test=labels[:256])
    for name, splits in (("folder", ("train", "val")), ("cifar", ("train", "test"))):
        for split in splits:
            for i in range(images if split == "train" else images // 4):
                folder = root / name / split / f"class{i % 10}"
                folder.mkdir(parents=True, exist_ok=True)
                small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(
                    folder / f"{i:05d}.jpg", quality=75)
    fig2 = ["experiment=fig2", "model.kind=linear"]
    return {
        "digits · Fig. 2": [*fig2, "data=digits"],
        "MNIST npz · Fig. 2": [*fig2, f"data.npz_path={npz}", f"data.val_size={images // 10}"],
        "JPEG folder · FTBNN-18": ["data=folder", f"data.root={root / 'folder'}",
                                   "data.image_size=32"],
        "CIFAR tree · FTBNN-18": ["data=cifar10", f"data.root={root / 'cifar'}",
                                  f"data.val_size={images // 2}"],
    }


def step_rate(starts: list[float], batch: int, warmup: int) -> float:
    """Images/s from batch start times: the median step, loading included."""
    steps = [b - a for a, b in itertools.pairwise(starts)][warmup:]
    return batch / statistics.median(steps)


def ours(overrides: list[str], steps: int, warmup: int, batch: int, folder: Path) -> float:
    """Images/s of ``python -m ftbnn_exp`` with ``overrides``, timed by :class:`StepTimes`."""
    folder = Path(tempfile.mkdtemp(dir=folder))
    times = folder / "starts.json"
    run = [sys.executable, "-m", "ftbnn_exp", *overrides, "trainer.max_epochs=1",
           f"trainer.limit_train_batches={steps + warmup}", "trainer.limit_val_batches=1",
           "trainer.limit_test_batches=1", "logger=csv", f"hydra.run.dir={folder / 'run'}",
           f"+callbacks.bench={{_target_: benchmarks.train.StepTimes, path: '{times}'}}"]
    done = subprocess.run(run, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"python -m ftbnn_exp {' '.join(overrides)} failed:\n{done.stderr}")
    return step_rate(json.loads(times.read_text()), batch, warmup)


def plain(overrides: list[str], steps: int, warmup: int) -> float:
    """Images/s of a minimal loop: the config's dataset, model and optimizer, nothing else."""
    cfg = compose_config(overrides)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    run_specs = specs(cfg)
    model = build_model(model_spec(cfg, run_specs, dm.spec), cfg.lean_backward).train()
    channels_last = cfg.channels_last is True
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()
    optimizer = build_optimizer(model, run_specs.optimizer)
    workers = cfg.data.num_workers
    loader = DataLoader(dm.train_set, batch_size=cfg.data.batch_size, shuffle=True,
                        num_workers=workers, persistent_workers=workers > 0, drop_last=True)
    autocast = (torch.autocast("cpu", torch.bfloat16) if cfg.trainer.precision == "bf16-mixed"
                else nullcontext())
    starts: list[float] = []
    while len(starts) <= steps + warmup:
        for images, labels in loader:
            starts.append(time.perf_counter())
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if len(starts) > steps + warmup:
                break
    return step_rate(starts, cfg.data.batch_size, warmup)


def has_bf16() -> bool:
    """bf16 arithmetic in hardware (AVX-512 BF16 or AMX), as oneDNN reports it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per row")
    parser.add_argument("--images", type=int, default=2000, help="training images written")
    parser.add_argument("--sources", nargs="*", help="a subset of the sources (prefixes)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()
    modes = [m for m in args.modes if m != "bf16" or has_bf16()]
    print(f"training img/s, python -m ftbnn_exp vs a plain PyTorch loop, batch {args.batch}, "
          f"median of {args.steps} steps, {args.rounds} alternated rounds ({machine()}; CPU "
          f"capability {capability}, bf16 {'yes' if has_bf16() else 'no: bf16 rows left out'})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources = write_sources(root, args.images)
        for name, source in sources.items():
            if args.sources and not any(name.startswith(s) for s in args.sources):
                continue
            for mode in modes:
                overrides = [*source, *MODES[mode], f"data.batch_size={args.batch}"]
                pairs = []
                for _ in range(args.rounds):  # alternated: a drift of the machine hits both
                    p = plain(overrides, args.steps, args.warmup)
                    o = ours(overrides, args.steps, args.warmup, args.batch, root)
                    pairs.append((o, p))
                ratios = [o / p for o, p in pairs]
                print(f"  {name:24s} {mode:14s} ours {statistics.median(o for o, _ in pairs):8.1f}"
                      f"  plain {statistics.median(p for _, p in pairs):8.1f} img/s   ratio "
                      f"{statistics.median(ratios):.2f}× (rounds {min(ratios):.2f}–"
                      f"{max(ratios):.2f}; target ≥ {TARGET}×: "
                      f"{'met' if statistics.median(ratios) >= TARGET else 'NOT met'})",
                      flush=True)
    print(f"  (torch threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
