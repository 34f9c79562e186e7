"""Loading that resumes exactly: where an epoch stands, its order and every sample's randomness
are functions of (seed, epoch, index), and the loader's position travels in checkpoints.

- :class:`EpochSampler` draws each epoch's order from ``(seed, epoch)`` and takes this
  process's share under DDP (as ``DistributedSampler``, padding by wrap-around), so the
  order of any epoch can be made again after a restart.
- :class:`SeededSamples` runs every sample's transforms under a torch seed made from
  ``(seed, epoch, index)``: the crops and flips of a sample do not depend on which worker
  reads it, on the worker count, or on a resume.
- torchdata's ``StatefulDataLoader`` keeps how many batches of the epoch were taken; Lightning
  saves that state in every checkpoint and restores it, so a resumed run continues with the
  next batch. Making a loader never draws from torch's global RNG (:class:`EpochLoader`), so
  the states that checkpoints restore stay those of the uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed of ``(seed, epoch, index)`` (splitmix-style mixing: nearby triples give
    unrelated seeds)."""
    value = (seed * _MIX[0] + epoch * _MIX[1] + index * _MIX[2]) % 2**64
    value ^= value >> 31
    value = (value * _MIX[1]) % 2**64
    return (value ^ (value >> 29)) % 2**63


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: a permutation of ``range(length)`` drawn from
    ``(seed, epoch)`` when ``shuffle``, else in order; this process's share under DDP."""

    def __init__(self, length: int, shuffle: bool, seed: int, epoch: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        _, world = _rank_and_world()
        return math.ceil(self.length / world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rank, world = _rank_and_world()
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        total = len(self) * world
        order += order[: total - len(order)]
        epoch = self.epoch
        return iter([(epoch, index) for index in order[rank:total:world]])


class SeededSamples(Dataset):
    """``dataset[index]`` computed under the torch seed of ``(seed, epoch, index)``; the
    caller's random state is left as it was."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int] | int]) -> list[Any]:
        """A batch's samples (the loader's batched fetch): the caller's random state is saved
        and restored once a batch, not once a sample (~8 µs each, a fifth of a small model's
        step); each sample is still drawn under its own seed."""
        # only the CPU generator: ``torch.manual_seed`` also seeds every device backend (~1.6 ms
        # a call, 96 % of a small model's training); the transforms draw from this one alone
        with torch.random.fork_rng(devices=[]):
            return [self._seeded(key) for key in keys]

    def _seeded(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
        return self.dataset[index]


class EpochLoader(StatefulDataLoader):
    """A ``StatefulDataLoader`` over an :class:`EpochSampler` whose saved position belongs to
    one epoch: restored into that epoch it continues with the next batch; restored into a
    later one (a checkpoint from the end of an epoch that stopped early, e.g.
    ``limit_train_batches``) the epoch starts from its first batch, as it would have.

    Its workers' base seed comes from a generator of its own, seeded from the sampler's seed,
    never from torch's global one. Each iterator a loader makes draws that seed; a resumed run
    makes its iterators after the checkpoint's RNG states were put back
    (:class:`~ftbnn_exp.training.callbacks.RngState`), where an uninterrupted run had made them
    (persistent workers: once) long before. Drawn from the global generator, that left the
    resumed run's torch RNG one draw per loader away from the uninterrupted run's, and its
    workers seeded differently."""

    sampler: EpochSampler

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs: Any) -> None:
        generator = torch.Generator().manual_seed(sampler.seed)
        super().__init__(dataset, sampler=sampler, generator=generator, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "epoch": self.sampler.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("epoch") == self.sampler.epoch:
            super().load_state_dict({k: v for k, v in state_dict.items() if k != "epoch"})
