"""``python -m ftbnn_exp.data.mnist_source [mnist.npz]``: the data overrides for MNIST runs.

Prints, on stdout, the overrides of the best source available: the given Keras-style npz,
torchvision's MNIST files (already under ``data/`` or downloadable), or else the embedded
digits; says on stderr which one, and why when it is not MNIST.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftbnn_exp.data.vision import MNISTDataModule
from ftbnn_exp.errors import DataNotFoundError


def choose(npz_path: str | None, root: str = "data") -> tuple[str, str]:
    """(overrides, message)."""
    if npz_path:
        path = Path(npz_path)
        if path.is_file():
            return (f"data=mnist data.npz_path={path.resolve()}",
                    f"MNIST: using {path.resolve()}")
        reason = f"{npz_path} is not a file"
    else:
        reason = "no mnist.npz given (MNIST_NPZ=...)"
    try:
        MNISTDataModule(root=root, download=True).setup()
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
