"""``python -m ftbnn_exp.data.mnist_source [mnist.npz]``: the data overrides for MNIST runs.

Prints, on stdout, the overrides of the best source available: the given Keras-style npz,
torchvision's MNIST files (already under ``data/`` or downloadable), or else the embedded
digits; says on stderr which one, and why when it is not MNIST.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftbnn_exp.data.vision import MNISTDataModule, load_mnist_npz
from ftbnn_exp.errors import DataNotFoundError


def npz_problem(npz_path: str) -> str | None:
    """Why ``npz_path`` is not a usable mnist.npz (its contents too: not twenty runs that fail
    alike), or None."""
    if not Path(npz_path).is_file():
        return f"{npz_path} is not a file"
    try:
        load_mnist_npz(npz_path)
    except DataNotFoundError as error:
        return str(error)
    return None


def choose(npz_path: str | None, root: str = "data") -> tuple[str, str]:
    """(overrides, message)."""
    reason = npz_problem(npz_path) if npz_path else "no mnist.npz given (MNIST_NPZ=...)"
    if reason is None:
        path = Path(npz_path).resolve()
        return f"data=mnist data.npz_path={path}", f"MNIST: using {path}"
    try:
        MNISTDataModule(seed=0, root=root, download=True).setup()
        return f"data=mnist data.root={root}", f"MNIST: torchvision files under {root}/"
    except DataNotFoundError as error:
        detail = " ".join(str(error).split())
        return "data=digits", (f"MNIST not available ({reason}; {detail}); using the embedded "
                               f"8×8 digits instead — the numbers are not Fig. 2's MNIST")


def main(argv: list[str]) -> int:
    overrides, message = choose(argv[0] if argv else None)
    print(message, file=sys.stderr)
    print(overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
