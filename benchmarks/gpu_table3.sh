#!/usr/bin/env bash
# Table 3 on CIFAR-10 on one GPU, in under 9 minutes (issue 27): (a) benchmarks/gpu.sh's
# measurements; (b) the nine rows (experiment=cifar10/<row>), with the fastest data backend
# measured on the tree, three seeds for baseline, fprelu, prelu and none when the time allows,
# and as many epochs as fit: timed on a probe run of two epochs, then fitted to what is left
# before the deadline by 3 lanes (multiruns side by side on the GPU); (c) the Table 3 report
# (python -m ftbnn_exp.report: each row's mean ± std, our ordering against the paper's,
# curves), everything under --out (default: $OUT).
#
#   bash benchmarks/gpu_table3.sh --data <CIFAR-10 tree or its zip> [--out DIR] [--epochs N]
#        [--rows a,b,...] [--seeds N] [--skip-gpu-sh] [--keep-checkpoints]
#   bash benchmarks/gpu_table3.sh --dry-run --out /tmp/t3    # the same steps on the CPU, tiny
#
# --epochs N trains N epochs without the probe (the deadline still stops the lanes); --seeds N
# is the most seeds the four rows get (default 3; other rows: seed 1); --rows a subset;
# --skip-gpu-sh leaves out (a). Bad arguments: one line on stderr, exit 2. A step that fails
# or is stopped at its time limit is named at the end, after the report, and the exit is 1.
#
# The GPU run (a session with the device machine; no test runs it):
#   1. mkdir -p gpu-data && cp ../shared/data/cifar10-jpeg.zip gpu-data/
#      grep -qxF gpu-data/ .git/info/exclude 2>/dev/null || echo gpu-data/ >> .git/info/exclude
#      (42 MB, within the 64 MiB `carry` takes; ignored by git, it travels only when carried)
#   2. the run tool with carry ["gpu-data"] and timeout_s 600 (the script ends by 9 minutes):
#        python3 -m zipfile -e gpu-data/cifar10-jpeg.zip gpu-data/ &&
#        bash benchmarks/gpu_table3.sh --data gpu-data/cifar10
#      (--data gpu-data/cifar10-jpeg.zip also works: unzipped into a temporary folder)
#   3. back under $OUT: gpu_table3.log (this output), gpu-sh.log and gpu-sh/, backends.txt,
#      probe.log and probe/, lane-<n>.log, table3/ (report.md, report-table3.csv,
#      report-table3-runs.csv, curves-table3.png/.svg, a folder <row>-seed<seed> per job with
#      metrics.json and csv/); the checkpoints are deleted unless --keep-checkpoints.
#   Check it on the CPU first: bash benchmarks/gpu_table3.sh --dry-run --out /tmp/t3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

# The whole script's deadline: under 9 minutes with a margin (--dry-run: 900 s, a slow CPU).
LIMIT_S=${GPU_TABLE3_LIMIT_S:-525}
GPU_SH_LIMIT_S=240    # (a) at most this long; what it printed by then stays in gpu-sh.log
PROBE_LIMIT_S=150     # the probe run (2 epochs of the baseline row)
REPORT_RESERVE_S=40   # kept for the report and the clean-up after the lanes
LANES=3               # multiruns side by side on the one GPU
MIN_SEED_EPOCHS=3     # fewer epochs than this with every seed: one seed per row instead
ALL_ROWS=$(ls conf/experiment/cifar10 | sed -n 's/^\([^_].*\)\.yaml$/\1/p' | paste -sd, -)
SEEDED_ROWS=" baseline fprelu prelu none "

usage="usage: bash benchmarks/gpu_table3.sh --data PATH | --dry-run [--out DIR] [--epochs N] \
[--rows a,b,...] [--seeds N] [--skip-gpu-sh] [--keep-checkpoints]"
fail() { echo "error: $*" >&2; exit 2; }
whole() { [[ $2 =~ ^[1-9][0-9]*$ ]] || fail "$1 '$2' is not a whole number from 1"; }
whole GPU_TABLE3_LIMIT_S "$LIMIT_S"
value() { [ $# -ge 2 ] && [ -n "$2" ] && [[ $2 != --* ]] || fail "$1 needs a value; $usage"; }

# --- the arguments: each mistake is one line and exit 2, before anything is written --------
data="" out=${OUT:-} epochs="" rows=$ALL_ROWS seeds=3 dry=0 skip_gpu_sh=0 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --data) value "$@"; data=$2; shift 2 ;;
    --out) value "$@"; out=$2; shift 2 ;;
    --epochs) value "$@"; whole "$1" "$2"; epochs=$2; shift 2 ;;
    --rows) value "$@"; rows=$2; shift 2 ;;
    --seeds) value "$@"; whole "$1" "$2"; seeds=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --skip-gpu-sh) skip_gpu_sh=1; shift ;;
    --keep-checkpoints) keep=1; shift ;;
    -h|--help) echo "$usage (more: the comments atop the script)"; exit 0 ;;
    *) fail "unknown argument '$1'; $usage" ;;
  esac
done
[[ $rows =~ ^[a-z0-9_]+(,[a-z0-9_]+)*$ ]] || fail "--rows '$rows': give row names, comma-separated"
for row in ${rows//,/ }; do
  [[ ",$ALL_ROWS," == *",$row,"* ]] || fail "--rows: '$row' is not a row; allowed: $ALL_ROWS"
done
twice=$(tr , '\n' <<< "$rows" | sort | uniq -d | paste -sd, -)
[ -z "$twice" ] || fail "--rows: $twice given twice"
data_root() {  # a folder -> itself or its only sub-folder, whichever holds train/ and test/
  local found=()
  [ -d "$1/train" ] && [ -d "$1/test" ] && { echo "$1"; return; }
  for dir in "$1"/*/; do [ -d "$dir/train" ] && [ -d "$dir/test" ] && found+=("${dir%/}"); done
  [ ${#found[@]} = 1 ] || fail "--data '$data': no train/<class> and test/<class> folders in it \
or in one folder below it (the CIFAR-10 zip holds cifar10/train/<class>/*.jpg, cifar10/test/...)"
  echo "${found[0]}"
}
root=""
if [ -d "$data" ]; then
  root=$(data_root "$(cd "$data" && pwd)")
elif [ -n "$data" ]; then
  [ -e "$data" ] || fail "--data '$data' does not exist"
  [[ $data == *.zip ]] || fail "--data '$data' is a file, not a .zip; give the tree or its zip"
elif [ $dry = 0 ]; then
  fail "--data is required: the CIFAR-10 tree (train/<class>, test/<class>) or its zip"
fi
out=${out:-multirun/gpu-table3/$(date +%Y-%m-%d_%H-%M-%S)}
[ ! -d "$out/table3" ] || fail "--out '$out' holds an earlier run (table3/); give a new folder"
mkdir -p "$out" || fail "--out '$out' cannot be created"
out=$(cd "$out" && pwd)
exec > >(tee -a "$out/gpu_table3.log") 2> >(tee -a "$out/gpu_table3.log" >&2)

# --- the helper (the Python steps) and the clean-up -----------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-table3.XXXXXX")
lane_pids=()
stop_lanes() {  # each lane's timeout (it passes TERM on: a run saves its state), then the lane
  for pid in "${lane_pids[@]}"; do pkill -TERM -P "$pid" || true; kill -TERM "$pid" || true; done
} 2>/dev/null
trap 'stop_lanes; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
helper=$work/gpu_table3_helper.py
cat > "$helper" <<'PYTHON'
"""The Python steps of benchmarks/gpu_table3.sh, which writes this file out and runs it from the
repository root: a CIFAR-shaped JPEG tree for --dry-run, the data backends' images/s on the
tree, the epoch budget and its lanes, and the Table 3 report."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
SEEDED = ("baseline", "fprelu", "prelu", "none")
"""The rows that get every seed (issue 27): the baseline and the three it is compared with."""


def write_tree(root: Path, train: int, test: int) -> None:
    """``root/{train,test}/<class>/NNNN.jpg``: 32×32 RGB JPEGs at quality 75, the layout of
    the CIFAR-10 JPEG tree, each a smooth random pattern tinted by its class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                small = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
                small[..., label % 3] = 25 * label
                image = Image.fromarray(small).resize((32, 32), Image.BILINEAR)
                image.save(folder / f"{i:04d}.jpg", quality=75)


def backend_rate(root: str, backend: str, device: Any, batch: int, workers: int,
                 batches: int) -> float:
    """Images/s of the recipe's training loader (experiment=cifar10/baseline: augment=cifar,
    CIFAR normalisation) with ``data.backend=backend``, delivered on ``device``; worker
    start-up and pipeline building excluded."""
    from benchmarks.data import loader_rate
    from ftbnn_exp.app.build import build_datamodule
    from ftbnn_exp.app.config import compose_config

    cfg = compose_config(["experiment=cifar10/baseline", "data=cifar10", f"data.root={root}",
                          f"data.backend={backend}", f"data.batch_size={batch}",
                          f"data.num_workers={workers}",
                          f"data.pin_memory={str(device.type == 'cuda').lower()}"])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return loader_rate(dm, device, batches)


def fastest_backend(args: argparse.Namespace) -> None:
    """One line per backend this machine has, then the fastest's name alone (read by the
    script)."""
    import torch

    from benchmarks.data import available_backends

    device = torch.device(args.device)
    rates = {}
    for backend in available_backends():
        try:
            rates[backend] = backend_rate(args.root, backend, device, args.batch, args.workers,
                                          args.batches)
        except Exception as error:  # a backend that does not run here is left out, named
            print(f"  data.backend={backend:11s} failed: {type(error).__name__}: "
                  f"{str(error).strip().splitlines()[:1]}", file=sys.stderr)
            continue
        print(f"  data.backend={backend:11s} {rates[backend]:9.1f} img/s", file=sys.stderr)
    if not rates:
        raise SystemExit("error: no data backend could read the tree (above)")
    print(max(rates, key=rates.get))


def probe_times(log: Path, started: float, ended: float) -> tuple[float, float]:
    """(seconds per epoch, seconds of a run besides its epochs) from the probe's log, each
    line stamped with the time it was printed: an epoch is the gap between the lines of
    epochs 1 and 2 (steady state; the console counts from 1); the rest of the run's wall
    time is its overhead."""
    stamps = {}
    for line in log.read_text().splitlines():
        stamp, _, text = line.partition(" ")
        for epoch in (0, 1):
            if text.startswith(f"epoch {epoch + 1}/"):
                stamps[epoch] = float(stamp)
    if len(stamps) < 2:
        raise SystemExit(f"error: the probe run printed no epoch lines; see {log}")
    epoch = max(stamps[1] - stamps[0], 0.1)
    return epoch, max(ended - started - 2 * epoch, 0.0)


def split_lanes(rows: list[str], seeds: int, lanes: int) -> list[list[str]]:
    """The rows in ``lanes`` groups of about equal jobs (a row of :data:`SEEDED` counts
    ``seeds`` jobs), the largest rows placed first, each on the lane with the fewest jobs."""
    jobs = {row: seeds if row in SEEDED else 1 for row in rows}
    groups: list[list[str]] = [[] for _ in range(min(lanes, len(rows)))]
    load = [0] * len(groups)
    for row in sorted(rows, key=lambda r: -jobs[r]):
        lane = load.index(min(load))
        groups[lane].append(row)
        load[lane] += jobs[row]
    return groups


def lane_jobs(group: list[str], seeds: int) -> int:
    return sum(seeds if row in SEEDED else 1 for row in group)


def epochs_that_fit(seconds: float, overhead: float, epoch: float, jobs: int,
                    lanes: int) -> int:
    """Epochs per run with which a lane of ``jobs`` runs ends within ``seconds``: each run
    costs ``overhead`` plus its epochs, an epoch ``epoch`` seconds alone and at most ``lanes``
    times that while every lane trains on the one GPU (a bound: the lanes end early rather
    than late)."""
    return math.floor((seconds - jobs * overhead) / (jobs * epoch * lanes))


def fit(args: argparse.Namespace, rows: list[str], seeds: int, epoch: float,
        overhead: float) -> int:
    """The epochs that fit with ``seeds`` seeds, said on stderr."""
    groups = split_lanes(rows, seeds, args.lanes)
    jobs = max(lane_jobs(g, seeds) for g in groups)
    epochs = epochs_that_fit(args.seconds, overhead, epoch, jobs, len(groups))
    print(f"  seeds {seeds}: the longest lane has {jobs} runs: {epochs} epochs fit",
          file=sys.stderr)
    return epochs


def budget(args: argparse.Namespace, rows: list[str]) -> tuple[int, int]:
    """(epochs, seeds): every seed if that leaves ``args.min_seed_epochs`` epochs, else one
    seed per row and the epochs that fit (at least 1)."""
    epoch, overhead = probe_times(Path(args.probe_log), args.started, args.ended)
    print(f"probe: {epoch:.1f} s per epoch, {overhead:.1f} s per run besides its epochs; "
          f"{args.seconds:.0f} s left for {args.lanes} lanes", file=sys.stderr)
    epochs = fit(args, rows, args.seeds, epoch, overhead)
    if args.seeds > 1 and epochs < args.min_seed_epochs:
        return max(fit(args, rows, 1, epoch, overhead), 1), 1
    return max(epochs, 1), args.seeds


def plan(args: argparse.Namespace) -> None:
    """First line ``<epochs> <seeds>``, then each lane's rows (comma-separated)."""
    rows = args.rows.split(",")
    epochs, seeds = args.epochs, args.seeds
    if args.probe_log:
        fitted = budget(args, rows)
        if args.dry_run:
            print(f"  (dry run: would train {fitted[0]} epochs with {fitted[1]} seed(s); "
                  f"trains {epochs})", file=sys.stderr)
        else:
            epochs, seeds = fitted
    print(epochs, seeds)
    for group in split_lanes(rows, seeds, args.lanes):
        print(",".join(group))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    tree = steps.add_parser("tree")
    tree.add_argument("root", type=Path)
    tree.add_argument("--train", type=int, default=6)
    tree.add_argument("--test", type=int, default=2)
    rates = steps.add_parser("backends")
    rates.add_argument("root")
    for name, kind in (("--device", str), ("--batch", int), ("--workers", int),
                       ("--batches", int)):
        rates.add_argument(name, type=kind, required=True)
    lanes = steps.add_parser("plan")
    lanes.add_argument("--rows", required=True)
    for name, kind in (("--epochs", int), ("--seeds", int), ("--lanes", int),
                       ("--min-seed-epochs", int), ("--seconds", float),
                       ("--started", float), ("--ended", float)):
        lanes.add_argument(name, type=kind, default=0)
    lanes.add_argument("--probe-log", default="")
    lanes.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.step == "tree":
        write_tree(args.root, args.train, args.test)
    else:
        {"backends": fastest_backend, "plan": plan}[args.step](args)


if __name__ == "__main__":
    main()
PYTHON
help_py() { PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$helper" "$@"; }
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }
failures=()

# --- the data: the user's tree, its zip, or a generated one for --dry-run -------------------
if [ -f "$data" ]; then
  echo "unzipping $data into $work/data"
  "$PY" -m zipfile -e "$data" "$work/data" || fail "--data '$data' is not a readable zip"
  root=$(data_root "$work/data")
elif [ -z "$root" ]; then
  help_py tree "$work/cifar10"
  root=$work/cifar10
  echo "dry run: generated a CIFAR-shaped tree (10 classes of 32×32 JPEGs) in $root"
fi

if [ $dry = 1 ]; then
  LIMIT_S=${GPU_TABLE3_LIMIT_S:-900} GPU_SH_LIMIT_S=480 LANES=2 device=cpu workers=0 batch=2
  run_args=(trainer=cpu data.batch_size=2 ++data.pin_memory=false trainer.limit_train_batches=1
            trainer.limit_val_batches=1 trainer.limit_test_batches=1
            +trainer.num_sanity_val_steps=0)
else
  device=cuda batch=512 run_args=()
  workers=$(( $(nproc) / LANES - 1 )); [ "$workers" -ge 2 ] || workers=2
fi
deadline=$LIMIT_S  # $SECONDS counts from the script's start
left() { echo $((deadline - REPORT_RESERVE_S - SECONDS)); }

# --- (a) today's GPU measurements --------------------------------------------------------
if [ $skip_gpu_sh = 0 ]; then
  gpu_sh_args=(--out "$out/gpu-sh"); [ $dry = 1 ] && gpu_sh_args+=(--dry-run --no-compile)
  echo "== (a) benchmarks/gpu.sh ${gpu_sh_args[*]} (at most $GPU_SH_LIMIT_S s)"
  status=0
  PY=$PY timeout --signal=TERM --kill-after=10 "$GPU_SH_LIMIT_S" bash benchmarks/gpu.sh \
    "${gpu_sh_args[@]}" 2>&1 | tee "$out/gpu-sh.log" || status=$?
  case $status in
    0) ;;
    124) failures+=("gpu.sh was stopped at $GPU_SH_LIMIT_S s; its lines so far: gpu-sh.log") ;;
    *) failures+=("gpu.sh exited $status; see gpu-sh.log") ;;
  esac
fi

# --- (b) the fastest data backend, the epochs that fit, the lanes -----------------------
echo "== (b) Table 3 on CIFAR-10 from $root ($((deadline - SECONDS)) s left)"
echo "data backends, the recipe's training loader, batch $batch, $workers workers, on $device:"
status=0
backend=$(help_py backends "$root" --device "$device" --batch "$batch" --workers "$workers" \
  --batches $((dry ? 2 : 20)) 2> "$out/backends.txt") || status=$?
cat "$out/backends.txt"
[ $status = 0 ] || { echo "error: measuring the data backends failed (above)"; exit 1; }
echo "  fastest: data.backend=$backend" | tee -a "$out/backends.txt"
# ++: data.backend and data.pin_memory come from the recipe, not from conf/data/cifar10.yaml, and a
# multirun over several experiments checks its other overrides against the config without them
run_args+=(data=cifar10 "data.root=$root" "++data.backend=$backend" "data.num_workers=$workers")

plan_args=(--rows "$rows" --seeds "$seeds" --lanes "$LANES" --min-seed-epochs "$MIN_SEED_EPOCHS")
if [ -z "$epochs" ]; then
  echo "probe: experiment=cifar10/baseline, 2 epochs, alone (at most $PROBE_LIMIT_S s)"
  rm -rf "$out/probe"
  started=$EPOCHREALTIME status=0
  timeout --signal=TERM --kill-after=10 "$PROBE_LIMIT_S" "$PY" -m ftbnn_exp \
    experiment=cifar10/baseline seed=0 "${run_args[@]}" trainer.max_epochs=2 \
    "hydra.run.dir=$out/probe" 2>&1 | stamp > "$out/probe.log" || status=$?
  ended=$EPOCHREALTIME
  if [ $status != 0 ]; then
    tail -n 5 "$out/probe.log"
    echo "error: the probe run failed (exit $status); see $out/probe.log"
    exit 1
  fi
  plan_args+=(--probe-log "$out/probe.log" --started "$started" --ended "$ended"
              --seconds "$(left)")
  [ $dry = 0 ] || plan_args+=(--dry-run --epochs 1)
else
  plan_args+=(--epochs "$epochs")
fi
mapfile -t planned < <(help_py plan "${plan_args[@]}")
[ ${#planned[@]} -ge 2 ] || { echo "error: planning the lanes failed (above)"; exit 1; }
read -r epochs seeds <<< "${planned[0]}"
lanes=("${planned[@]:1}")

sweep_dir=$out/table3
multirun() {  # seeds rows: experiment=cifar10/<row> × seed=<seeds>, stopped at the deadline
  local seconds
  seconds=$(left)
  [ "$seconds" -gt 0 ] || { echo "no time left for seed(s) $1 of $2"; return 124; }
  timeout --signal=TERM --kill-after=30 "$seconds" "$PY" -m ftbnn_exp -m "seed=$1" \
    "experiment=$(sed 's|[^,]*|cifar10/&|g' <<< "$2")" "${run_args[@]}" \
    "trainer.max_epochs=$epochs" "hydra.sweep.dir=$sweep_dir" \
    'hydra.sweep.subdir=${row}-seed${seed}'
}
lane() {  # rows: seed 1 of each first (every row has a result early), then the other seeds
  local seeded=() row status=0
  multirun 1 "$1" || status=$?
  for row in ${1//,/ }; do [[ $SEEDED_ROWS == *" $row "* ]] && seeded+=("$row"); done
  if [ $status != 124 ] && [ "$seeds" -gt 1 ] && [ ${#seeded[@]} -gt 0 ]; then
    multirun "$(seq -s, 2 "$seeds")" "$(IFS=,; echo "${seeded[*]}")" || status=$?
  fi
  return $status
}
seeding="seed 1 for every row"
[ "$seeds" = 1 ] || seeding="seeds 1-$seeds for${SEEDED_ROWS% } (of those run), seed 1 for others"
echo "training: $epochs epoch(s) per run, $seeding; ${#lanes[@]} lane(s); data.backend=$backend; \
jobs in $sweep_dir/<row>-seed<seed>"
for i in "${!lanes[@]}"; do
  echo "  lane $((i + 1)): ${lanes[i]}"
  (status=0; lane "${lanes[i]}" > "$out/lane-$((i + 1)).log" 2>&1 || status=$?
   echo $status > "$work/lane-$((i + 1)).rc") &
  lane_pids+=($!)
done
for i in "${!lane_pids[@]}"; do
  wait "${lane_pids[i]}" || true
  status=$(cat "$work/lane-$((i + 1)).rc" 2>/dev/null || echo 1)
  what="lane $((i + 1)) (${lanes[i]})" log="see lane-$((i + 1)).log"
  case $status in
    0) ;;
    124) failures+=("$what was stopped at the deadline; $log") ;;
    *) failures+=("$what exited $status; $log") ;;
  esac
done
lane_pids=()
grep -h -e "test top-1" -e "^error" "$out"/lane-*.log || true

# --- (c) the report -----------------------------------------------------------------------
echo "== (c) report ($((deadline - SECONDS)) s left)"
"$PY" -m ftbnn_exp.report "$sweep_dir" || failures+=("the report failed (above)")
if [ $keep = 0 ]; then
  mib=$(find "$out" -name '*.ckpt' -type f -printf '%s\n' |
        awk '{s += $1} END {printf "%d", s / 2^20}')
  count=$(find "$out" -name '*.ckpt' -type f -print -delete | wc -l)
  echo "removed $count checkpoints ($mib MiB); --keep-checkpoints keeps them"
fi
echo "done in $SECONDS s: $epochs epoch(s), $seeding, data.backend=$backend; \
$sweep_dir/report.md"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'failed: %s\n' "${failures[@]}"
  exit 1
fi
