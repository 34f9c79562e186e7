"""ftbnn-exp from Python: compose, train, compare, resume, test, export, predict.

    python examples/quickstart.py runs/quickstart              # ~1 min on 2 cores
    python -m ftbnn_exp.report runs/quickstart                 # the two runs side by side

Extra arguments are overrides for every run (the test adds ``trainer.limit_train_batches=2``
and such to finish in seconds). Everything here is also a shell command; the comments name it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

import ftbnn_exp


def digit_pngs(folder: Path, count: int = 8) -> Path:
    """A few of scikit-learn's digits as 8×8 PNG files (0–16 ink counts as 0–255 gray)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_digits(return_X_y=True)
    for index in range(count):
        pixels = np.round(images[index].reshape(8, 8) * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index}-label{labels[index]}.png")
    return folder


def main(out: Path, extra: list[str]) -> None:
    # the config a run uses: `python -m ftbnn_exp --cfg job nonlinearity=prelu`
    cfg = ftbnn_exp.compose(["nonlinearity=prelu"])
    print("composed:", cfg.model.name, cfg.nonlinearity.name, cfg.optimizer.lr)

    # a model of the registry and its complexity: `python -m ftbnn_exp.complexity`
    model = ftbnn_exp.create_model("ftbnn_resnet", depth=18, num_classes=1000, image_size=224)
    totals = ftbnn_exp.count_complexity(model, (3, 224, 224)).totals()
    print(f"ResNet-18 baseline at 224 px: {totals['flops'] / 1e6:.0f} M FLOPs, "
          f"{totals['bops'] / 1e9:.2f} G BOPs")

    # two runs on the embedded digits: `python -m ftbnn_exp nonlinearity=... hydra.run.dir=...`
    common = ["trainer.max_epochs=2", *extra]
    runs = {name: ftbnn_exp.train([f"nonlinearity={name}", *common], run_dir=out / name)
            for name in ("none", "prelu")}
    for name, run in runs.items():
        print(f"{name}: {run.status}, test top-1 {run.top1:.1f} %, {run.folder}")

    # every run under the folder, one row each (a pandas DataFrame where pandas is installed)
    print(ftbnn_exp.runs_table(out))

    # two more epochs on the same run, its schedule stretched to the new length
    longer = ftbnn_exp.resume(runs["prelu"].folder,
                              ["trainer.max_epochs=3", "resume_changes=rescale"])
    print(f"prelu after {longer.record['epochs_run']} epochs: top-1 {longer.top1:.1f} %")
    # its best-on-validation weights tested: `... test_weights=best`
    best = ftbnn_exp.test(longer.folder, weights="best")
    print(f"prelu, best.ckpt: top-1 {best.top1:.1f} %")

    # deployment: `python -m ftbnn_exp.deploy export|predict`
    exported = out / "prelu.ftbnn"
    sizes = ftbnn_exp.export(longer.checkpoint, exported)
    print(f"export: {sizes['export_bytes'] / 1024:.0f} KiB")
    for prediction in ftbnn_exp.predict(exported, digit_pngs(out / "pngs")):
        print(prediction.line())


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python examples/quickstart.py OUT_FOLDER [override ...]")
    main(Path(sys.argv[1]), sys.argv[2:])
