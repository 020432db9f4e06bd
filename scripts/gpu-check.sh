#!/usr/bin/env bash
# The one command run on a lent GPU machine, from the repository root, with gpu-stage/ (built
# by scripts/gpu-stage.sh) carried:
#
#   bash scripts/gpu-check.sh
#
# It checks the machine and the binaries, then runs what matters most first, so that it fits in
# about five minutes even when every step takes its whole limit: the parity tests on CUDA, the
# W1/W2 benchmarks (and the PyTorch peer's, when staged) and one short end-to-end run. After
# those, while the budget lasts: the CUDA tests, TF32, graphs off, the attention benchmarks, a
# longer run, and the parity tests under compute-sanitizer. A summary table of whatever ran
# comes last.
#
# A failing step does not stop the others. A step whose program is not installed here (say
# compute-sanitizer, on a machine with only the driver) or that the budget leaves no time for
# is a SKIP, which does not fail the run; the exit status is 1 if any step failed, else 0.
# Every step has a time limit, and all of them share GPU_CHECK_BUDGET seconds (default 540,
# inside the device tool's 10-minute command limit). Logs go to $OUT (the device tool brings
# them back) or gpu-stage/out.
set -uo pipefail
cd "$(dirname "$0")/.."

PACKED=gpu-stage
# The staged binaries travel gzipped; they are unpacked here.
STAGE=/tmp/tfmpe-gpu-stage
LOGS="${OUT:-$PACKED/out}"
mkdir -p "$LOGS"
LOG="$LOGS/gpu-check.log"
: >"$LOG"
BUDGET="${GPU_CHECK_BUDGET:-540}"
START=$(date +%s)
export TFMPE_REQUIRE_CUDA=1 RUST_BACKTRACE=1 PYTHONUNBUFFERED=1 TFMPE_BIN="$STAGE/tfmpe"

names=()
results=()
failed=0

# skip NAME REASON: lists a step that did not run, without failing the run.
skip() {
    names+=("$1")
    results+=("SKIP ($2)")
    printf '\n==> %s: skipped, %s\n' "$1" "$2" | tee -a "$LOG"
}

# The program a step runs: its first word after `env` and any VAR=value words.
program() {
    [ "$1" = env ] && shift
    while [[ "$1" == *=* ]]; do shift; done
    printf '%s' "$1"
}

# step NAME LIMIT_S COMMAND...: runs with the smaller of LIMIT_S and the time left. A program
# looked up on PATH that is not there is a skip; a staged binary (named by its path) that is
# missing is a failure, as the stage is broken.
step() {
    local name="$1" limit="$2" left rc t0 prog
    shift 2
    prog="$(program "$@")"
    if [[ "$prog" != */* ]] && ! command -v "$prog" >/dev/null 2>&1; then
        skip "$name" "no $prog on this machine"
        return
    fi
    left=$((BUDGET - ($(date +%s) - START)))
    [ "$left" -lt "$limit" ] && limit="$left"
    if [ "$limit" -lt 5 ]; then
        skip "$name" "no time left in the ${BUDGET}s budget"
        return
    fi
    names+=("$name")
    printf '\n==> %s (limit %ss): %s\n' "$name" "$limit" "$*" | tee -a "$LOG"
    t0=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("ok (${took}s)")
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        results+=("FAIL: timed out after ${took}s")
        failed=1
    else
        results+=("FAIL: exit $rc (${took}s)")
        failed=1
    fi
}

rm -rf "$STAGE"
mkdir -p "$STAGE/tests"
names+=("unpack $PACKED")
results+=("ok")
for f in "$PACKED"/tfmpe.gz "$PACKED"/tests/*.gz; do
    dest="$STAGE/${f#"$PACKED"/}"
    if ! { gunzip -c "$f" >"${dest%.gz}" && chmod +x "${dest%.gz}"; } 2>>"$LOG"; then
        # The steps that need the file fail on their own; this line says why.
        [ "${results[-1]}" = ok ] &&
            results[-1]="FAIL: cannot unpack $f (run scripts/gpu-stage.sh, carry $PACKED)"
        failed=1
    fi
done
[ -f "$PACKED/torch_tfmpe.py" ] && cp "$PACKED/torch_tfmpe.py" "$STAGE/"

# First, at most 320 s together: the machine, parity, W1/W2 against the peer, a short run.
step "nvidia-smi" 10 nvidia-smi
# Built on Debian 12 (glibc 2.36): every library must resolve and the binary must start.
step "glibc" 10 bash -c "ldd --version | head -n 1; for b in $STAGE/tfmpe $STAGE/tests/*; do \
    if ldd \"\$b\" | grep 'not found'; then exit 1; fi; done; $STAGE/tfmpe --version"
step "info" 15 "$STAGE/tfmpe" info
step "parity" 90 "$STAGE/tests/parity"
step "bench train-step (W1)" 40 "$STAGE/tfmpe" bench train-step --backend cuda --json
step "bench sample euler (W2)" 40 "$STAGE/tfmpe" bench sample --backend cuda --json
if [ -f "$STAGE/torch_tfmpe.py" ]; then
    step "torch train (W1)" 35 python3 "$STAGE/torch_tfmpe.py" train --device cuda
    step "torch sample euler (W2)" 35 python3 "$STAGE/torch_tfmpe.py" sample --solver euler \
        --device cuda
else
    skip "torch W1/W2" "no PyTorch peer staged"
fi
run_dir="$(mktemp -d)"
step "run, short" 45 "$STAGE/tfmpe" run --backend cuda --task hier-gaussian-linear \
    --sites 5 --budget 1000 --max-epochs 5 --out "$run_dir"
[ -f "$run_dir/report.json" ] && cp "$run_dir/report.json" "$LOGS/run-report.json"

# Then, while the budget lasts, most telling first.
for t in cuda_backend cuda_graphs; do
    step "test $t" 60 "$STAGE/tests/$t"
done
# The matmul cases again on the TF32 kernel, at the TF32 bound (tests/parity/matmul.rs).
step "parity matmul, tf32" 45 env TFMPE_MATMUL=tf32 "$STAGE/tests/parity" parity::matmul::cuda::
# The same two benchmarks with every kernel launched one by one, to measure what graphs save.
step "bench W1, graphs off" 40 env TFMPE_CUDA_GRAPHS=0 "$STAGE/tfmpe" bench train-step --backend cuda --json
step "bench W2, graphs off" 40 env TFMPE_CUDA_GRAPHS=0 "$STAGE/tfmpe" bench sample --backend cuda --json
# TF32 tensor-core GEMM (opt-in): the speed it buys.
step "bench W1, tf32" 40 env TFMPE_MATMUL=tf32 "$STAGE/tfmpe" bench train-step --backend cuda --json
# The attention forward alone at long sequences: bytes/s beside the card's copy bandwidth
# (the issue's "half the memory bandwidth" target; see docs/performance.md for why FLOP/s bind).
step "bench attention 1024" 40 "$STAGE/tfmpe" bench attention --backend cuda --json
step "bench attention 4096 hd16" 40 "$STAGE/tfmpe" bench attention --backend cuda --json \
    --tokens 4096 --batch 4 --heads 4 --head-dim 16
step "bench sample rk4 25" 40 "$STAGE/tfmpe" bench sample --backend cuda --json --solver rk4 --steps 25
for t in alloc ode golden_step c2st; do
    step "test $t" 90 "$STAGE/tests/$t"
done
tf32_dir="$(mktemp -d)"
step "run, tf32" 120 env TFMPE_MATMUL=tf32 "$STAGE/tfmpe" run --backend cuda \
    --task hier-gaussian-linear --sites 5 --budget 1000 --max-epochs 20 --out "$tf32_dir"
# Last: under the sanitizer the parity suite runs many times slower (its CUDA cases only: the
# CPU and wgpu ones have no CUDA memory to check).
step "parity under compute-sanitizer" 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$STAGE/tests/parity" ::cuda:: --test-threads 4

{
    printf '\n==== summary (%s, %ss) ====\n' "$(date -u +%FT%TZ)" "$(($(date +%s) - START))"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
    for i in "${!names[@]}"; do
        printf '%-34s %s\n' "${names[$i]}" "${results[$i]}"
    done
    # One line per benchmark JSON object (tfmpe bench and the PyTorch peer alike).
    grep -E '^\{' "$LOG" | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        o = json.loads(line)
    except ValueError:
        continue
    who = o.get("impl") or "tfmpe-" + str(o.get("backend"))
    if "graphs off" in str(o.get("device", "")):
        who += " (no graphs)"
    if "matmul tf32" in str(o.get("device", "")):
        who += " (tf32)"
    shape = "N%s hd%s" % (o.get("tokens"), o.get("head_dim")) if "head_dim" in o else ""
    for key in ("steps_per_s", "steps_per_s_median", "samples_per_s", "samples_per_s_median",
                "gflop_per_s", "gb_per_s", "copy_gb_per_s", "fraction_of_copy"):
        if key in o:
            what = [who, str(o.get("workload", "?")), shape or str(o.get("solver", ""))]
            print("%-30s %-5s %-7s %s = %.4g" % (*what, key, o[key]))
' || true
    if [ "$failed" -eq 0 ]; then echo "PASS: no step failed"; else echo "FAIL: a step failed"; fi
} | tee "$LOGS/summary.txt"
exit "$failed"
