"""``python -m ftbnn_exp.deploy export <checkpoint> <out>`` | ``verify`` | ``bench <checkpoint>``.

``export`` writes the inference model (1-bit packed binary convs, folded BN) and prints its size
beside the checkpoint's. ``verify`` checks, on the run's own test data, that every binary conv
computed with bit operations equals PyTorch's exactly and that the exported model predicts the
same top-1; it prints a table and exits with 1 if anything differs. ``bench`` times the export
on the C++ kernels against the PyTorch model on this machine, at 1 thread and at all cores
(``--threads``), and where the export's time goes by layer type.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import data_module, load_checkpoint, model_from_checkpoint, model_spec
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.export import (
    describe_sizes,
    export,
    load_export,
    verify,
    verify_table,
)
from ftbnn_exp.errors import UserError
from ftbnn_exp.models import family


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ftbnn_exp.deploy",
                                     description=__doc__.splitlines()[0])
    plugin_help = ("import MODULE first (a plug-in a checkpoint's model needs; nothing a "
                   "file names is imported otherwise); repeatable")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=plugin_help)
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
    timing = commands.add_parser("bench", help="exported model (C++ kernels) vs PyTorch, by "
                                 "thread count, with the time by layer type")
    for command in (checking, timing):
        command.add_argument("--stem", choices=fast.STEM_PRECISIONS, default="fp32",
                             help="the fused runners' stem: fp32 (exact, default) or bf16 "
                                  "(opt-in, faster, not bit-exact)")
    timing.add_argument("checkpoint")
    for command in (exporting, checking, timing):  # before or after the command's name
        command.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                             dest="command_plugin", help=plugin_help)
    timing.add_argument("--repeats", type=int, default=30)
    timing.add_argument("--threads", type=int, nargs="*", default=None,
                        help="thread counts to time (default: 1 and all cores)")
    return parser


def _bench(args: argparse.Namespace) -> int:
    """Milliseconds per image, batch 1, at each thread count: the float model in PyTorch eval
    against its export on the C++ kernels (fused for the baseline, per conv otherwise), and
    the export's time by layer type."""
    import os
    import statistics
    import time

    import torch

    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.deploy.profile import breakdown, describe

    checkpoint = load_checkpoint(args.checkpoint)
    metadata = checkpoint["ftbnn_exp"]
    model = model_from_checkpoint(checkpoint)
    spec = data_module(metadata).spec
    inference = to_inference(model)
    runner, how = fast.fastest(inference, family(model_spec(metadata).family).fast_path,
                               stem_precision=args.stem)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    if any(t < 1 for t in threads):
        raise UserError(f"--threads {threads}: thread counts must be positive")
    x = torch.randn(1, spec.in_channels, spec.image_size, spec.image_size)
    with torch.no_grad():
        if args.stem == "fp32" and not torch.equal(runner(x), inference(x)):
            raise UserError(f"deploy bench: the {how} runner's logits differ from the reference "
                            f"engine's; not timed (`deploy verify` shows where)")
    print(f"runner: {how}")

    def ms(run) -> float:
        with torch.no_grad():
            run(x)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(x)
                times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    before = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            pytorch, ours = ms(model), ms(runner)
            print(f"{metadata['run_name']} at {spec.image_size} px, batch 1, {count} thread(s), "
                  f"median of {args.repeats}: PyTorch fp32 {pytorch:.3f} ms/image, export "
                  f"({how}) {ours:.3f} ms/image, {pytorch / ours:.2f}×")
            print(f"  export by layer type: {describe(breakdown(runner, x))}")
    finally:
        torch.set_num_threads(before)
    return 0


def _run(args: argparse.Namespace) -> int:
    plugins.load(args.plugin + args.command_plugin)
    if args.command == "bench":
        return _bench(args)
    if args.command == "export":
        print(describe_sizes(export(args.checkpoint, args.out)))
        print(f"written: {args.out}")
        return 0
    checkpoint = load_checkpoint(args.checkpoint)
    metadata = checkpoint["ftbnn_exp"]
    model = model_from_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "model.ftbnn"
        sizes = export(args.checkpoint, out)
        inference = load_export(out)
    datamodule = data_module(metadata, args.data)
    datamodule.setup("test")
    checks, summary = verify(model, inference, datamodule.test_dataloader(), args.batches)
    table, passed = verify_table(checks, summary)
    print(table)
    images = next(iter(datamodule.test_dataloader()))[0]
    paths = fast.check_paths(inference, images, family(model_spec(metadata).family).fast_path,
                             args.stem)
    if paths and args.stem == "fp32":
        print(f"C++ kernels vs the reference engine, logits on {len(images)} test images: "
              + ", ".join(f"{path} {'exact' if exact else 'DIFFERENT'}"
                          for path, (exact, _) in paths.items()))
        passed = passed and all(exact for exact, _ in paths.values())
    elif paths:  # the opt-in bf16 stem: reported, never exact by promise
        print(f"C++ kernels with the bf16 stem (opt-in, not bit-exact) vs the reference engine "
              f"on {len(images)} test images: "
              + ", ".join(f"{path} {'exact' if exact else 'not bit-exact'}, top-1 the same on "
                          f"{100 * same:.1f} %" for path, (exact, same) in paths.items()))
    else:
        print("C++ kernels: not available here; the reference engine is used")
    print(describe_sizes(sizes))
    print("PASS" if passed else "FAIL")
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
