"""Whether a run's trainer fits the machine it starts on (accelerator, devices, nodes), checked
before anything starts."""

from __future__ import annotations

import os
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import Accelerator, AcceleratorRegistry
from lightning.pytorch.plugins.environments import (
    LSFEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from omegaconf import DictConfig, ListConfig

from ftbnn_exp.errors import UserError


def accelerator_class(name: str) -> type[Accelerator]:
    """Lightning's accelerator registered as ``name`` (cpu, cuda, mps, tpu, a plug-in's)."""
    return AcceleratorRegistry[name]["accelerator"]


def accelerator_backend(name: str) -> str:
    """``trainer.accelerator`` as Lightning resolves ``auto`` (a device where one is available,
    else the CPU) and ``gpu`` (Lightning's name for CUDA or MPS)."""
    if name not in ("auto", "gpu"):
        return name
    devices = sorted(n for n in AcceleratorRegistry.available_accelerators() if n != "cpu")
    usable = [n for n in devices if accelerator_class(n).is_available()
              and (name == "auto" or n in ("cuda", "mps"))]
    return usable[0] if usable else ("cpu" if name == "auto" else "cuda")


def cpu_cores() -> int:
    """The cores this process may run on (its affinity: taskset, a SLURM allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def requested_devices(devices: Any, backend: str) -> int:
    """How many processes ``trainer.devices`` starts, read as Lightning reads it (``auto``,
    ``-1``, a count, ``"2"``, a list of GPU ids or ``"0,1"``)."""
    accelerator = accelerator_class(backend)
    if devices == "auto":
        return 1 if backend == "cpu" else accelerator.auto_device_count()
    return len(accelerator.get_parallel_devices(accelerator.parse_devices(devices)))


def check_devices(name: str, backend: str, devices: Any) -> None:
    """``trainer.devices`` as Lightning reads it, up to this machine's cores or devices."""
    devices = list(devices) if isinstance(devices, ListConfig) else devices
    capacity = cpu_cores() if backend == "cpu" else accelerator_class(backend).auto_device_count()
    try:
        count = requested_devices(devices, backend)
    except (TypeError, ValueError, MisconfigurationException):
        count = None  # a form Lightning does not take for this accelerator
    if count is None or count > capacity:
        unit = "CPU cores" if backend == "cpu" else f"{backend.upper()} devices"
        allowed = (f"auto or 1 to {capacity}" if backend == "cpu" else
                   f"auto, -1, 1 to {capacity} or ids from 0 to {capacity - 1}")
        raise UserError(f"trainer.devices={devices} does not fit this machine's {capacity} "
                        f"{unit} (trainer.accelerator={name}); allowed: {allowed}")


def check_machine(trainer: DictConfig) -> None:
    """``trainer.accelerator``, ``devices`` and ``num_nodes`` against this machine, before
    anything starts: CPU processes up to its cores, GPUs up to ``torch.cuda.device_count()``
    (``trainer.devices=64`` on 2 cores forked 63 DDP processes before anything refused it),
    more than one node only where every node runs the command (else rank 0 waits for ever)."""
    name = trainer.get("accelerator", "auto")
    backend = accelerator_backend(name)
    if not accelerator_class(backend).is_available():
        here = ["auto", *sorted(n for n in AcceleratorRegistry.available_accelerators()
                                if accelerator_class(n).is_available())]
        raise UserError(f"trainer.accelerator={name}: this machine has no {backend.upper()} "
                        f"device; allowed here: {', '.join(here)}")
    check_devices(name, backend, trainer.get("devices", "auto"))
    nodes = trainer.get("num_nodes", 1)
    launched = any(env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment,
                                            LSFEnvironment)) or "NODE_RANK" in os.environ
    if nodes > 1 and not launched:
        raise UserError(f"trainer.num_nodes={nodes} needs this command started on every node "
                        f"(hydra/launcher=slurm, torchrun, or NODE_RANK, MASTER_ADDR and "
                        f"MASTER_PORT set); allowed here: 1")
