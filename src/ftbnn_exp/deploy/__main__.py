"""``python -m ftbnn_exp.deploy`` ``export`` | ``predict`` | ``verify`` | ``bench`` | ``rate``.

``export`` writes the inference model (1-bit packed binary convs, folded BN) and prints its size
beside the checkpoint's. ``predict`` prints the class of an image file, or of each image under a
folder, prepared as the model's test split was. ``verify`` checks, on the run's own test data,
that every binary conv computed with bit operations equals PyTorch's exactly and that the
exported model predicts the same top-1; it prints a table and exits with 1 if anything differs.
``bench`` times the export on the C++ kernels against the PyTorch model on this machine, at 1
thread and at all cores (``--threads``), and where the export's time goes by layer type.
``rate`` measures how many binary multiply-adds cost one fp32 multiply-add on this CPU, per
layer kind, beside the paper's 64 (:mod:`ftbnn_exp.deploy.rate`).

A deployed model shares its machine, so this command sets ``OMP_WAIT_POLICY=PASSIVE`` (unless
the environment sets it) before torch starts OpenMP: with OpenMP's default, threads spin between
PyTorch's parallel operators, and beside one busy process all cores ran 6-7× slower than one
thread; passive, they sleep. A service that embeds the runner sets it the same way.
"""

# the environment is set before anything imports torch (E402 is not selected here)
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from ftbnn_exp import plugins
from ftbnn_exp.artifacts import data_module, load_checkpoint, model_from_checkpoint, model_spec
from ftbnn_exp.deploy import fast
from ftbnn_exp.deploy.export import (
    describe_sizes,
    export,
    load_export,
    read_export,
    verify,
    verify_table,
)
from ftbnn_exp.errors import UserError


def positive(text: str) -> int:
    """An argparse type: a count of 1 or more (``--batches -1`` was taken, and verified
    nothing)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer (allowed: 1, "
                                         f"2, ...)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ftbnn_exp.deploy",
                                     description=__doc__.splitlines()[0])
    plugin_help = ("import MODULE first (a plug-in a checkpoint's model needs; nothing a "
                   "file names is imported otherwise); repeatable")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help=plugin_help)
    commands = parser.add_subparsers(dest="command", required=True)
    exporting = commands.add_parser("export", help="checkpoint -> packed inference model")
    exporting.add_argument("checkpoint", help="a run's checkpoints/last.ckpt or best.ckpt")
    exporting.add_argument("out", help="the file to write (e.g. model.ftbnn; its folder must "
                           "exist): 1-bit packed binary convs, folded BN, the model's spec")
    predicting = commands.add_parser("predict", help="class of an image file or of each image "
                                     "under a folder, with an export")
    predicting.add_argument("export", help="a file written by `deploy export`")
    predicting.add_argument("images", help="an image file, or a folder searched recursively")
    predicting.add_argument("--top", type=int, default=3,
                            help="classes to print per image (default 3)")
    checking = commands.add_parser("verify", help="bit-op exactness on the run's test data")
    checking.add_argument("checkpoint", help="a run's checkpoints/last.ckpt or best.ckpt")
    checking.add_argument("--batches", type=positive, default=None,
                          help="test batches to use (default: the whole test split)")
    checking.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE",
                          help="data overrides, e.g. data.root=/my/imagenet data.batch_size=8")
    timing = commands.add_parser("bench", help="exported model (C++ kernels) vs PyTorch, by "
                                 "thread count, with the time by layer type")
    for command in (checking, timing):
        command.add_argument("--stem", choices=fast.STEM_PRECISIONS, default="fp32",
                             help="the fused runners' stem: fp32 (exact, default) or bf16 "
                                  "(opt-in, faster, not bit-exact)")
    timing.add_argument("checkpoint", help="a run's checkpoints/last.ckpt or best.ckpt")
    for command in (exporting, predicting, checking, timing):  # before or after its name
        command.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                             dest="command_plugin", help=plugin_help)
    timing.add_argument("--repeats", type=positive, default=30,
                        help="timed rounds per thread count (default 30)")
    timing.add_argument("--image-size", type=positive, default=None,
                        help="input side in pixels (default: the run's data size)")
    timing.add_argument("--loaded", action="store_true",
                        help="time the export again beside one busy process (a shared machine)")
    timing.add_argument("--threads", type=int, nargs="*", default=None,
                        help="thread counts to time (default: 1 and all cores)")
    rating = commands.add_parser("rate", help="BOPs that cost one fp32 multiply-add here, per "
                                 "layer kind, beside the paper's 64")
    rating.add_argument("--threads", type=int, default=1, help="threads (default 1)")
    rating.add_argument("--repeats", type=int, default=30, help="rounds (default 30)")
    rating.add_argument("--image-size", type=int, default=224,
                        help="the layers' shapes at this image size (default 224)")
    rating.set_defaults(command_plugin=[])
    return parser


def _bench(args: argparse.Namespace) -> int:
    """Milliseconds per image, batch 1, at each thread count: the float model in PyTorch eval
    against its export on the C++ kernels (its family's fused runner, else per conv), and
    the export's time by layer type."""
    from functools import partial

    import torch

    from ftbnn_exp.deploy.layers import to_inference
    from ftbnn_exp.deploy.profile import breakdown, describe
    from ftbnn_exp.deploy.timing import busy_process, spread_ms

    checkpoint = load_checkpoint(args.checkpoint)
    metadata = checkpoint["ftbnn_exp"]
    model = model_from_checkpoint(checkpoint)
    spec = data_module(metadata).spec
    inference = to_inference(model)
    runner, how = fast.fastest(inference, model_spec(metadata).family, stem_precision=args.stem)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    if any(t < 1 for t in threads):
        raise UserError(f"--threads {threads}: thread counts must be positive")
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats}: give at least 1 round")
    side = args.image_size or spec.image_size
    if side < 1:
        raise UserError(f"--image-size {side}: give a positive number of pixels")
    x = torch.randn(1, spec.in_channels, side, side)
    with torch.no_grad():
        if args.stem == "fp32" and not torch.equal(runner(x), inference(x)):
            raise UserError(f"deploy bench: the {how} runner's logits differ from the reference "
                            f"engine's; not timed (`deploy verify` shows where)")
    print(f"runner: {how}")
    before = torch.get_num_threads()
    try:
        for count in threads:
            torch.set_num_threads(count)
            pytorch = spread_ms(partial(model, x), args.repeats)
            ours = spread_ms(partial(runner, x), args.repeats)
            print(f"{metadata['run_name']} at {side} px, batch 1, {count} thread(s), "
                  f"{args.repeats} rounds: PyTorch fp32 {pytorch}, export {ours}, "
                  f"{pytorch.median / ours.median:.2f}× (medians)")
            print(f"  export by layer type: {describe(breakdown(runner, x))}")
        if args.loaded:
            with busy_process():
                for count in threads:
                    torch.set_num_threads(count)
                    print(f"  beside one busy process, {count} thread(s): export "
                          f"{spread_ms(partial(runner, x), args.repeats)}")
    finally:
        torch.set_num_threads(before)
    return 0


def _rate(args: argparse.Namespace) -> int:
    """The exchange rate, measured side by side in rounds (:func:`rate.measure_rates`)."""
    from ftbnn_exp.deploy import rate

    found = rate.measure_rates(args.image_size, args.repeats, args.threads)
    print("\n".join(rate.describe_rates(found, args.image_size, args.threads)))
    return 0


def _predict(args: argparse.Namespace) -> int:
    """One line per image: its class and probability, then the runners-up."""
    from ftbnn_exp.deploy.predict import predict_files

    if args.top < 1:
        raise UserError(f"--top {args.top}: give at least 1 class")
    model, metadata = read_export(args.export)
    for prediction in predict_files(model, metadata, args.images, args.top):
        print(prediction.line())
    return 0


def _run(args: argparse.Namespace) -> int:
    plugins.load(args.plugin + args.command_plugin)
    if args.command == "rate":
        return _rate(args)
    if args.command == "bench":
        return _bench(args)
    if args.command == "predict":
        return _predict(args)
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
    how, paths = fast.check_paths(inference, images, model_spec(metadata).family, args.stem)
    if paths:
        print(f"runner verified: {how}")
    if paths and args.stem == "fp32":
        print(f"C++ kernels vs the reference engine, logits on {len(images)} test images: "
              + ", ".join(f"{path} {'exact' if check.exact else 'DIFFERENT'}"
                          for path, check in paths.items()))
        passed = passed and all(check.exact for check in paths.values())
    elif paths:  # the opt-in bf16 stem: reported, never exact by promise
        print(f"C++ kernels with the bf16 stem (opt-in, not bit-exact) vs the reference engine "
              f"on {len(images)} test images: "
              + ", ".join(f"{path} {'exact' if check.exact else 'not bit-exact'}, top-1 the "
                          f"same on {100 * check.top1_same:.1f} %, max logit difference "
                          f"{check.max_logit_diff:.3g}" for path, check in paths.items()))
        if not fast.native_bf16():
            print("this CPU has no native bf16 (no AVX-512 BF16 or AMX): the bf16 stem is "
                  "converted around fp32 arithmetic, slower than the exact fp32 stem here")
    else:
        print("C++ kernels: not available here; the reference engine is used")
    print(describe_sizes(sizes))
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # torchdata's loader warns that a torch call it makes is deprecated: not the user's to fix
    warnings.filterwarnings("ignore", message=".*set_vital.*")
    try:
        return _run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
