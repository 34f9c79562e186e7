"""A quiet console: what a run prints is ours; library notices that ask nothing of the user
are dropped (``HYDRA_FULL_ERROR=1`` or ``FTBNN_VERBOSE=1`` keeps them)."""

from __future__ import annotations

import logging
import os
import warnings

_NOTICES = (
    r".*does not have many workers.*",
    r".*GPU available but not used.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*LeafSpec.*deprecated.*",
    r".*log_every_n_steps.*",
    r".*'set_vital' is deprecated.*",
    # a resumed run writes into its own checkpoint folder by design
    r".*Checkpoint directory .* exists and is not empty.*",
    # Lightning's guess on a machine with SLURM installed; jobs go through
    # hydra/launcher=slurm (README: SLURM), and a plain command on a login node is meant
    r".*The `srun` command is available on your system but is not used.*",
)


def quiet() -> None:
    if os.environ.get("FTBNN_VERBOSE") == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for pattern in _NOTICES:
        warnings.filterwarnings("ignore", message=pattern)
    # Lightning's start-up notices (devices, tips, "GPU available") are info-level records.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda",
                 # "weights_only was not set" on OnExceptionCheckpoint's save
                 "lightning.pytorch.trainer.connectors.checkpoint_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)
