"""Why derived L34-G5 ends its first digits epoch at a train loss of ~50 (issue 32, part 3):
activation std per stage at initialisation, the loss of every step of the first epoch, and
which parameters' first Adam step moves the logits (the FC alone vs everything else).
docs/derived-first-epoch-loss.md records a run.

    python -m benchmarks.first_steps [--lr 0.01 0.001] [--models 34,5,180 18,1,64]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftbnn_exp.app.build import build_model
from ftbnn_exp.data import DigitsDataModule
from ftbnn_exp.models import ModelSpec
from ftbnn_exp.nn import NonLinearitySchedule

Batches = list[tuple[Tensor, Tensor]]


def derived(depth: int, groups: int, width: int) -> nn.Module:
    """The derived model as ``python -m ftbnn_exp model=derived`` builds it on digits."""
    schedule = NonLinearitySchedule("relu", "fprelu").to_dict()
    kwargs = {"depth": depth, "groups": groups, "width": width, "image_size": 8,
              "in_channels": 1, "num_classes": 10, "schedule": schedule}
    return build_model(ModelSpec("derived_ftbnn", kwargs), lean_backward=False).train()


@torch.no_grad()
def stage_stds(model: nn.Module, images: Tensor) -> list[float]:
    """Std of the bridge's output and of every stage's, then of the logits (training-mode BN)."""
    h = model.bridge(model.stem(images))
    stds = [h.std().item()]
    for stage in model.stages:
        h = stage(h)
        stds.append(h.std().item())
    return [*stds, model(images).std().item()]


def losses(model: nn.Module, batches: Batches, lr: float) -> list[float]:
    """The loss of each step of one epoch with the paper's Adam at ``lr``."""
    optimizer = torch.optim.Adam(model.parameters(), lr)
    found = []
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        found.append(loss.item())
    return found


def after_one_step(model: nn.Module, batches: Batches, chosen: Callable[[str], bool]
                   ) -> tuple[float, float]:
    """(logits std, loss) on the second batch after one Adam step (lr 0.01) of the chosen
    parameters only."""
    model = copy.deepcopy(model)
    params = [p for name, p in model.named_parameters() if chosen(name)]
    optimizer = torch.optim.Adam(params, 0.01)
    F.cross_entropy(model(batches[0][0]), batches[0][1]).backward()
    optimizer.step()
    with torch.no_grad():
        logits = model(batches[1][0])
        return logits.std().item(), F.cross_entropy(logits, batches[1][1]).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["34,5,180", "18,1,64"],
                        help="depth,groups,width (180: L34-G5's solved width at 135 M)")
    parser.add_argument("--lr", type=float, nargs="*", default=[0.01, 0.001])
    args = parser.parse_args()
    dm = DigitsDataModule(batch_size=64, seed=42)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    for text in args.models:
        depth, groups, width = (int(v) for v in text.split(","))
        torch.manual_seed(0)
        model = derived(depth, groups, width)
        stds = " ".join(f"{s:.2f}" for s in stage_stds(model, batches[0][0]))
        with torch.no_grad():
            pooled = model.pool(model.forward_features(batches[0][0])).flatten(1)
        print(f"L{depth}-G{groups} w={width}: std at init (bridge, stages 1-4, logits) {stds}; "
              f"FC fan-in {pooled.shape[1]}, mean |pooled feature| {pooled.abs().mean():.2f}")
        for name, chosen in (("FC only", lambda n: n.startswith("fc.")),
                             ("all but the FC", lambda n: not n.startswith("fc.")),
                             ("all", lambda n: True)):
            std, loss = after_one_step(model, batches, chosen)
            print(f"  one Adam step (lr 0.01) of {name:15s}: logits std {std:6.1f}, "
                  f"next batch's loss {loss:6.1f}")
        for lr in args.lr:
            torch.manual_seed(0)
            steps = losses(derived(depth, groups, width), batches, lr)
            print(f"  lr {lr:g}: loss per step {' '.join(f'{v:.1f}' for v in steps)}; "
                  f"epoch mean {sum(steps) / len(steps):.1f}", flush=True)


if __name__ == "__main__":
    main()
