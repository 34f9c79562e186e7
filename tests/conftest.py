"""Shared fixtures: small, deterministic, CPU-only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n N` (make test) each worker, and the CLI processes it starts, runs one
    # thread: N workers share the cores instead of each waiting on descheduled threads.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
CLUSTER_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "slurm-cluster.sh"


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private one-node SLURM cluster (scripts/slurm-cluster.sh) for the tests marked
    ``slurm``: the environment its clients need (SLURM_CONF, its sacct on PATH). Where SLURM is
    not installed these tests skip, saying so in one line; with FTBNN_SLURM=required (CI) the
    packages are installed and a cluster that does not come up is a failure."""
    required = os.environ.get("FTBNN_SLURM") == "required"
    if required:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "install"], check=True)
    folder = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up", str(folder)], capture_output=True,
                        text=True)
    if up.returncode == 3 and not required:
        pytest.skip(up.stderr.strip())
    if up.returncode:
        pytest.fail(f"the SLURM test cluster did not start: {up.stderr.strip()}", pytrace=False)
    try:
        yield {"SLURM_CONF": str(folder / "slurm.conf"),
               "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down", str(folder)], check=True)
