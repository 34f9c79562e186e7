"""``python -m ftbnn_exp.deploy export <checkpoint> <out>`` | ``verify <checkpoint>``.

``export`` writes the inference model (1-bit packed binary convs, folded BN) and prints its size
beside the checkpoint's. ``verify`` checks, on the run's own test data, that every binary conv
computed with bit operations equals PyTorch's exactly and that the exported model predicts the
same top-1; it prints a table and exits with 1 if anything differs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from ftbnn_exp.build import build_datamodule
from ftbnn_exp.deploy.export import (
    describe_sizes,
    export,
    load_export,
    trained_model,
    verify,
    verify_table,
)
from ftbnn_exp.errors import UserError
from ftbnn_exp.report.fprelu import load_checkpoint


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ftbnn_exp.deploy",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="checkpoint -> packed inference model")
    exporting.add_argument("checkpoint")
    exporting.add_argument("out")
    checking = commands.add_parser("verify", help="bit-op exactness on the run's test data")
    checking.add_argument("checkpoint")
    checking.add_argument("--batches", type=int, default=None,
                          help="test batches to use (default: the whole test split)")
    checking.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE",
                          help="data overrides, e.g. data.root=/my/imagenet data.batch_size=8")
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.command == "export":
        print(describe_sizes(export(args.checkpoint, args.out)))
        print(f"written: {args.out}")
        return 0
    checkpoint = load_checkpoint(args.checkpoint)
    model, cfg = trained_model(checkpoint)
    if args.data:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(args.data))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model.ftbnn"
        sizes = export(args.checkpoint, out)
        inference = load_export(out)
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    checks, summary = verify(model, inference, datamodule.test_dataloader(), args.batches)
    table, passed = verify_table(checks, summary)
    print(table)
    print(describe_sizes(sizes))
    return 0 if passed else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
